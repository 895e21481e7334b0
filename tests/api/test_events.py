"""SSE streams of the side-app, read with httpx from a real uvicorn server."""

from __future__ import annotations

import threading

from datatrace_tasks.orchestration.manager import TaskManager
from datatrace_tasks.state.store import Store
from datatrace_tasks.state.units import UnitStatus
from tests.api.helpers import (
    DEADLINE,
    LiveServer,
    Serve,
    SseMessage,
    sse_messages,
    wait_until,
)


def _job(manager: TaskManager, task_id: str, steps: range, *, final: bool) -> None:
    """Write what a running job writes: statuses, progress of two units, and the end."""
    for step in steps:
        if step == 0:
            manager.store.set_task_status(task_id, "running", "2 units to run")
            manager.update_unit_status_with_sync(task_id, "a", UnitStatus.RUNNING)
            manager.update_unit_status_with_sync(task_id, "b", UnitStatus.RUNNING)
        manager.update_unit_progress_with_sync(task_id, "a", (step + 1) * 10, force=True)
        manager.update_unit_progress_with_sync(task_id, "b", (step + 1) * 5, force=True)
    if final:
        manager.update_unit_status_with_sync(task_id, "a", UnitStatus.COMPLETED)
        manager.update_unit_status_with_sync(task_id, "b", UnitStatus.COMPLETED)
        manager.store.set_task_status(task_id, "completed", "2 of 2 units completed")


def _is_end(message: SseMessage) -> bool:
    return message.event == "task" and message.json["status"] == "completed"


class TestReplay:
    """Last-Event-ID: a reconnecting client gets exactly what it missed, then live events."""

    def test_disconnect_and_reconnect_miss_nothing(
        self, serve: Serve, store_url: str, store: Store, fast_manager: TaskManager
    ) -> None:
        """The union of two connections around a disconnect equals the event log exactly."""
        task_id = fast_manager.create_task("job", ["a", "b"], totals={"a": 300, "b": 150})
        live = serve(store_url)
        url = f"/api/tasks/{task_id}/events"
        first: list[SseMessage] = []
        second: list[SseMessage] = []
        writer = threading.Thread(
            target=_job, args=(fast_manager, task_id, range(0, 15)), kwargs={"final": False}
        )
        with live.client() as client:
            with client.stream("GET", url) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                messages = sse_messages(response.iter_lines())
                hello = next(messages)
                assert hello.event == "heartbeat" and hello.retry is not None
                joined_at = int(hello.json["last_event_id"])
                writer.start()  # the job starts once the client listens
                for message in messages:
                    first.append(message)
                    if len(first) == 12:
                        break
            # The server notices the disconnect and drops the subscriber promptly.
            wait_until(lambda: live.broadcaster.subscriber_count == 0, "subscriber not dropped")
            writer.join(DEADLINE)
            _job(fast_manager, task_id, range(15, 30), final=True)  # written while away
            headers = {"Last-Event-ID": first[-1].id or ""}
            with client.stream("GET", url, headers=headers) as response:
                for message in sse_messages(response.iter_lines()):
                    if message.event == "heartbeat":
                        continue
                    second.append(message)
                    if _is_end(message):
                        break
        log = [e.id for e in store.events_after(joined_at, task_id=task_id, limit=10_000)]
        got = [int(m.id or -1) for m in first + second]
        assert got == log
        assert len(set(got)) == len(got)
        assert all(m.event == ("unit" if m.json["unit_id"] else "task") for m in first + second)
        assert all(int(m.id or -1) == m.json["id"] for m in first + second)

    def test_query_parameter_replays_the_whole_log(
        self, serve: Serve, store_url: str, store: Store, fast_manager: TaskManager
    ) -> None:
        """`?last_event_id=0` replays the task's log from the start, in order."""
        task_id = fast_manager.create_task("job", ["a", "b"], totals={"a": 300, "b": 150})
        _job(fast_manager, task_id, range(0, 5), final=True)
        live = serve(store_url)
        got: list[int] = []
        with (
            live.client() as client,
            client.stream(
                "GET", f"/api/tasks/{task_id}/events", params={"last_event_id": "0"}
            ) as response,
        ):
            for message in sse_messages(response.iter_lines()):
                if message.event != "heartbeat":
                    got.append(int(message.id or -1))
                    if _is_end(message):
                        break
        assert got == [e.id for e in store.events_after(0, task_id=task_id)]

    def test_malformed_last_event_id_is_fresh_start(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """A garbage Last-Event-ID header starts a live-only stream instead of failing."""
        task_id = fast_manager.create_task("job", ["a", "b"])
        live = serve(store_url)
        with (
            live.client() as client,
            client.stream(
                "GET", f"/api/tasks/{task_id}/events", headers={"Last-Event-ID": "x'; DROP"}
            ) as response,
        ):
            assert response.status_code == 200
            messages = sse_messages(response.iter_lines())
            hello = next(messages)
            assert hello.event == "heartbeat"
            fast_manager.update_unit_status_with_sync(task_id, "a", UnitStatus.RUNNING)
            event = next(m for m in messages if m.event != "heartbeat")
        assert event.json["unit_id"] == "a"
        assert int(event.id or -1) > int(hello.json["last_event_id"])


class TestRollupEvents:
    """`?rollup=true`: the server's rows/s and ETA ride along, never moving Last-Event-ID."""

    @staticmethod
    def _read(live: LiveServer, task_id: str, headers: dict[str, str]) -> list[SseMessage]:
        """A rollup stream's messages, heartbeats left out, up to the rollup after the end."""
        got: list[SseMessage] = []
        url = f"/api/tasks/{task_id}/events"
        with (
            live.client() as client,
            client.stream("GET", url, params={"rollup": "true"}, headers=headers) as response,
        ):
            for message in sse_messages(response.iter_lines()):
                if message.event != "heartbeat":
                    got.append(message)
                if message.event == "rollup" and any(_is_end(m) for m in got):
                    break
        return got

    def test_rollups_follow_batches_and_replay_stays_exact(
        self, serve: Serve, store_url: str, store: Store, fast_manager: TaskManager
    ) -> None:
        """A rollup (no id) comes on connect and after each batch; the events around them
        are the log exactly, from the start and after a Last-Event-ID."""
        task_id = fast_manager.create_task("job", ["a", "b"], totals={"a": 300, "b": 150})
        _job(fast_manager, task_id, range(0, 5), final=True)
        live = serve(store_url)
        log = [e.id for e in store.events_after(0, task_id=task_id)]
        whole = self._read(live, task_id, {"Last-Event-ID": "0"})
        resumed = self._read(live, task_id, {"Last-Event-ID": str(log[6])})
        for messages, expected in ((whole, log), (resumed, log[7:])):
            assert messages[0].event == "rollup"  # on connect, before any event
            assert [int(m.id or -1) for m in messages if m.event != "rollup"] == expected
            rollups = [m for m in messages if m.event == "rollup"]
            assert all(m.id is None and m.json["task_id"] == task_id for m in rollups)
        final = whole[-1].json
        assert final["rollup"]["units_by_status"]["completed"] == 2
        assert (final["rollup"]["processed_records"], final["rollup"]["total_records"]) == (75, 450)
        assert (final["rollup"]["rows_per_second"], final["units"]) == (0.0, [])  # none running
        assert final["last_event_id"] >= log[-1]

    def test_running_units_carry_their_speed(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """A rollup lists each running unit with the server's rows/s and ETA."""
        task_id = fast_manager.create_task("job", ["a", "b"], totals={"a": 300, "b": 150})
        _job(fast_manager, task_id, range(0, 3), final=False)
        live = serve(store_url)
        with (
            live.client() as client,
            client.stream("GET", f"/api/tasks/{task_id}/events?rollup=true") as response,
        ):
            messages = sse_messages(response.iter_lines())
            rollup = next(m for m in messages if m.event == "rollup").json
        with live.client() as client:
            units = client.get(f"/api/tasks/{task_id}/units").json()["units"]
        expected = [{k: u[k] for k in ("id", "rows_per_second", "eta_seconds")} for u in units]
        assert rollup["units"] == expected
        assert rollup["rollup"]["units_by_status"]["running"] == 2


class TestAllTasks:
    """GET /api/events streams every task; a task's stream only its own."""

    def test_all_events_interleave_tasks_in_id_order(
        self, serve: Serve, store_url: str, fast_manager: TaskManager
    ) -> None:
        """Events of two tasks arrive on /api/events in increasing id order; the task stream
        of one of them sees none of the other's."""
        one = fast_manager.create_task("one", ["a", "b"])
        two = fast_manager.create_task("two", ["a", "b"])
        live = serve(store_url)
        with (
            live.client() as client,
            client.stream("GET", "/api/events") as everything,
            client.stream("GET", f"/api/tasks/{one}/events") as only_one,
        ):
            all_messages = sse_messages(everything.iter_lines())
            one_messages = sse_messages(only_one.iter_lines())
            assert next(all_messages).event == "heartbeat"
            assert next(one_messages).event == "heartbeat"
            _job(fast_manager, one, range(0, 2), final=True)
            _job(fast_manager, two, range(0, 2), final=True)
            seen: list[SseMessage] = []
            for message in all_messages:
                if message.event != "heartbeat":
                    seen.append(message)
                if _is_end(message) and message.json["task_id"] == two:
                    break
            mine: list[SseMessage] = []
            for message in one_messages:
                if message.event != "heartbeat":
                    mine.append(message)
                if _is_end(message):
                    break
        ids = [int(m.id or -1) for m in seen]
        assert ids == sorted(ids)
        assert {m.json["task_id"] for m in seen} == {one, two}
        assert {m.json["task_id"] for m in mine} == {one}
        assert [m.id for m in mine] == [m.id for m in seen if m.json["task_id"] == one]

    def test_stream_of_unknown_task_is_404(self, serve: Serve, store_url: str) -> None:
        """Streaming an unknown task answers 404 JSON instead of an empty stream."""
        with serve(store_url).client() as client:
            response = client.get("/api/tasks/missing/events")
        assert response.status_code == 404
        assert "not found" in response.json()["detail"]


class TestHeartbeat:
    """Idle streams send heartbeats, so proxies keep them open."""

    def test_idle_stream_sends_heartbeats(self, serve: Serve, store_url: str) -> None:
        """With nothing happening, `heartbeat` events (without an id) keep coming."""
        from datatrace_tasks.settings import ApiSettings

        live = serve(store_url, settings=ApiSettings(ping_seconds=0.2))
        with live.client() as client, client.stream("GET", "/api/events") as response:
            messages = sse_messages(response.iter_lines())
            beats = [next(messages) for _ in range(3)]
        assert [m.event for m in beats] == ["heartbeat"] * 3
        assert all(m.id is None for m in beats)
