"""Hostile identifiers and config values, generated, plus the legal-but-odd table names.

Every hostile identifier holds the marker `evil` unless its point is to be short or
blank, so a statement log can be searched for it without matching ordinary SQL.
"""

from __future__ import annotations

import re

import yaml

# Fragments that end a string or an identifier, end a statement, start a comment,
# or mean something to a driver's parameter formatting.
PAYLOADS = [
    "`",
    "``",
    "'",
    "''",
    '"',
    "\\",
    "\\'",
    ";",
    "--",
    "-- ",
    "#",
    "/*",
    "*/",
    "/* x */",
    "/*!50000 DROP TABLE victim */",
    "\x00",
    "\x1a",
    "\n",
    "\r\n",
    "\t",
    "%s",
    "%(x)s",
    "%",
    "?",
    ":name",
    "$1",
    "\\0",
    "\\N",
    ")",
    "(",
    ",",
    "=",
    "*",
    "_",
    "[/]",
    "[bold red]",
]
TEMPLATES = [
    "evil{p}",
    "evil{p}; DROP TABLE victim; --",
    "victim{p} evil OR 1=1",
    "{p}evil{p}",
]
SPECIAL = [
    "`victim`; DROP TABLE victim; -- evil",
    "victim`; DROP TABLE victim; -- evil",
    "victim' OR '1'='1 evil",
    'victim" OR "1"="1 evil',
    "victim) UNION SELECT user, password FROM mysql.user -- evil",
    "evil` UNION SELECT 1,2 -- ",
    "evil'; SHUTDOWN; --",
    "evil`; GRANT ALL ON *.* TO evil; --",
    "evil\x00victim",
    "victim\x00",
    "\x00",
    "evil; SELECT SLEEP(10)",
    "evil' AND SLEEP(10) AND '1",
    "evil`) ENGINE=MEMORY; --",
    "evil\\'; DROP TABLE victim; --",
    "evil\\`; DROP TABLE victim; --",
    "evil$$; DROP TABLE victim; $$",
    "evil\\g DROP TABLE victim",
    "evil; LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE victim",
    "evil INTO OUTFILE '/tmp/evil'",
]
DOTTED = [
    "db.victim",
    "`db`.`victim`",
    "`evil`.`victim`",
    "evil`.`victim",
    "information_schema.tables",
    "information_schema.TABLES",
    "mysql.user",
    "mysql.general_log",
    "performance_schema.threads",
    "victim.id",
    "evil.victim.id",
    ".victim",
    "victim.",
    "..",
    "./victim",
    "../victim",
    "/etc/passwd",
    "evil/../../victim",
    "evil\\victim",
    "[victim]",
]
LOOKALIKES = [
    "vіctim",  # Cyrillic i: a different table unless it exists
    "vісtіm",  # Cyrillic i and es
    "ｖｉｃｔｉｍ",  # fullwidth
    "victim\u200b",  # zero-width space
    "\u200bvictim",
    "victim\u00a0",  # no-break space
    "victim\u2060",  # word joiner
    "vic\u0301tim",  # combining acute
    "victim\u202e",  # right-to-left override
    "\ufeffvictim",  # byte-order mark
    "VICTIM",
    "Victim",
    "victim ",
    " victim",
    "evil\uff40; DROP TABLE victim; --",  # fullwidth grave accent
    "evil\uff07 OR 1=1",  # fullwidth apostrophe
    "evil\u02bc OR 1=1",  # modifier letter apostrophe
    "evil\u2019 OR 1=1",  # right single quotation mark
    "evil\uff1b DROP TABLE victim",  # fullwidth semicolon
    "evil\u2212\u2212 comment",  # minus signs
    "evil\u037e DROP TABLE victim",  # Greek question mark (looks like ;)
    "evil🙂",
    "evil\U0010fffd",
    "evil\u0000\u0301",
]
OVERLONG = [
    "evil" + "x" * 60,  # 64: the longest MySQL name, but no such table
    "evil" + "x" * 61,  # 65: one too many
    "evil" + "x" * 252,
    "evil" + "é" * 100,
    "evil" + "x" * 10_000,
    "evil" + "`" * 300,
    "evil" + "'" * 300,
    "evil" + ";--" * 200,
]
BLANK = ["", " ", "\t", "\n", "``", "''", '""', "victim%", "vict_m", "?", "*victim", "victim*"]


def _roundtrips(value: str) -> bool:
    """Whether `value` survives a trip through a YAML job file unchanged."""
    try:
        loaded = yaml.safe_load(yaml.safe_dump({"t": [value]}, allow_unicode=True))
        return bool(loaded["t"] == [value])
    except yaml.YAMLError:
        return False


def hostile_identifiers() -> list[str]:
    """At least 200 distinct hostile table names, each one a YAML file can carry."""
    values = [t.format(p=p) for p in PAYLOADS for t in TEMPLATES]
    values += SPECIAL + DOTTED + LOOKALIKES + OVERLONG + BLANK
    unique = list(dict.fromkeys(values))
    return [v for v in unique if _roundtrips(v)]


# Tables that really exist in the source: each must copy, with its odd columns and values.
ODD_TABLES = [
    "with space",
    "ünïcødé 表",
    "back`tick",
    "x`; DROP TABLE victim; --",
    'quote\'s "dq"',
    "semi;colon /* c */ -- d",
    "a.b",
    "per%cent%s",
    "ｆｕｌｌｗｉｄｔｈ",
    "vіctim",  # Cyrillic i: a real table that only looks like `victim`
    "[b]rich[/b] [/]",
]
ODD_COLUMNS = ["id", "va`l; -- x", "ünï col", "q'uote\"", "n u m"]
ODD_VALUES = [
    "plain",
    "it's",
    'dq "x"',
    "back\\slash",
    "semi; DROP TABLE victim; --",
    "/* c */ `bt`",
    "tab\there",
    "new\nline",
    "nul\x00byte",
    "ünïcødé 表 🙂",
    "%s %(x)s %%",
    "\\N",
    "",
]

_MARKER = re.compile("evil", re.IGNORECASE)


def searchable(value: str) -> bool:
    """Whether a log can be searched for `value` without matching ordinary statements."""
    return bool(_MARKER.search(value)) and len(value) >= 6
