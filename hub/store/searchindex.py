"""The records' full-text index (issue 14): one row per record with live origins, written in
the transaction that places, edits, merges, splits or removes the record (hub.store.placement,
hub.store.records), so search never shows what the listings no longer do.

A row holds the text of the record's live origins: titles; summaries, texts, tags and event
places (the body); and a token per merchant it has an origin from (`hub.search.merchant_token`:
a query names merchants by their configured names, which may change, so names are not
indexed). Each origin's text counts once, however many origins repeat it.

SQLite: the FTS5 table `record_search(title, body, merchant)`, rowid = record id, holding
stems (`hub.search.stem_text`: FTS5 has no German stemmer), ranked by bm25 with the title
weighted most. PostgreSQL: `record_search(record_id, document tsvector)` with a GIN index,
the text stemmed by the `german` configuration (title weight A, merchants B, body C),
ranked by ts_rank. Both answer the same parsed query (`hub.search.match_query`,
`hub.search.tsquery_text`).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from sqlalchemy import bindparam, column, func, literal_column, select, table
from sqlalchemy.engine import Connection

from hub import search
from hub.models import Item
from hub.records import Origin
from hub.store.bulk import placeholders

BODY_LIMIT = 20_000  # characters of a record's body that are indexed: a long text is found by its start
WEIGHTS = (10.0, 1.0, 3.0)  # bm25 weights of title, body and merchant: a title match counts most
CHUNK = 5000

SQLITE = table("record_search", column("rowid"))
POSTGRES = table("record_search", column("record_id"), column("document"))
_PG_DOCUMENT = ("setweight(to_tsvector('german', {m}), 'A') || setweight(to_tsvector('german', {m}), 'C') "
                "|| setweight(to_tsvector('german', {m}), 'B')")

Row = tuple[str, str, str]  # (title, body, merchants) as the database's index takes them


class Parts(NamedTuple):
    """What the index takes of one origin."""

    title: str
    summary: str
    text: str
    tags: Sequence[str]
    location: str | None
    merchant_id: str


def parts(item: Item) -> Parts:
    return Parts(item.title, item.summary, item.content_text, item.tags, item.event.location if item.event else None,
                 item.merchant_id)


def texts(origins: Iterable[Parts]) -> tuple[str, str, str]:
    """(title, body, merchant tokens) of a record with these live origins, unstemmed."""
    origins = list(origins)
    titles = dict.fromkeys(o.title for o in origins if o.title)
    body: dict[str, None] = {}
    for o in origins:
        if o.text:
            body[o.text] = None
        if o.summary and o.summary.rstrip("… ") not in o.text:  # not a teaser cut from the text
            body[o.summary] = None
        if o.tags:
            body[" ".join(o.tags)] = None
        if o.location:
            body[o.location] = None
    merchants = dict.fromkeys(search.merchant_token(o.merchant_id) for o in origins)
    return " \n".join(titles), " \n".join(body)[:BODY_LIMIT], " ".join(merchants)


def row(dialect: str, origins: Iterable[Parts]) -> Row:
    """What the index of `dialect` stores for a record with these live origins: the stems
    on SQLite, the text on PostgreSQL (which stems it itself)."""
    title, body, merchants = texts(origins)
    if dialect == "sqlite":
        return search.stem_text(title), search.stem_text(body), merchants
    return title, body, merchants


def rows_of(dialect: str, origins: Mapping[int, Sequence[Origin]]) -> dict[int, Row | None]:
    """record id -> its row, or None for a record without live origins (not indexed)."""
    out: dict[int, Row | None] = {}
    for record_id, members in origins.items():
        live = [parts(o.item) for o in members if o.live]
        out[record_id] = row(dialect, live) if live else None
    return out


def write(conn: Connection, rows: Mapping[int, Row | None]) -> None:
    """Write these records' rows, replacing what they had; None deletes a record's row."""
    drop(conn, [record_id for record_id, r in rows.items() if r is None])
    values = [(record_id, *r) for record_id, r in rows.items() if r is not None]
    if not values:
        return
    if conn.dialect.name == "sqlite":  # FTS5 replaces a row with the same rowid
        conn.exec_driver_sql("INSERT OR REPLACE INTO record_search (rowid, title, body, merchant) "
                             "VALUES (?, ?, ?, ?)", values)
        return
    document = _PG_DOCUMENT.format(m="%s")
    conn.exec_driver_sql(f"INSERT INTO record_search (record_id, document) VALUES (%s, {document}) "
                         "ON CONFLICT (record_id) DO UPDATE SET document = EXCLUDED.document", values)


def drop(conn: Connection, record_ids: Sequence[int]) -> None:
    """Delete these records' rows (removed records: not found any more)."""
    key = "rowid" if conn.dialect.name == "sqlite" else "record_id"
    for start in range(0, len(record_ids), CHUNK):
        chunk = record_ids[start:start + CHUNK]
        conn.exec_driver_sql(f"DELETE FROM record_search WHERE {key} IN ({placeholders(conn, len(chunk))})",
                             tuple(chunk))


def drop_where(conn: Connection, record_ids: Any) -> None:
    """Delete the rows of the records a subquery selects (retention)."""
    target = SQLITE.c.rowid if conn.dialect.name == "sqlite" else POSTGRES.c.record_id
    conn.execute((SQLITE if conn.dialect.name == "sqlite" else POSTGRES).delete().where(target.in_(record_ids)))


# --- asking -------------------------------------------------------------------------------------

class Match:
    """A resident's query against the index of `dialect`: `condition` on `table`, `ids` the
    records it finds (a subquery), `rank` for ordering by relevance (ascending: best first),
    `key` the record id of a row of the index."""

    def __init__(self, dialect: str, q: str, merchants: Mapping[str, str] | None = None) -> None:
        self.dialect = dialect
        if dialect == "sqlite":
            expression = search.match_query(q, merchants=merchants)
            self.found = expression is not None
            self.table, self.key = SQLITE, SQLITE.c.rowid
            self.condition = literal_column("record_search").op("MATCH")(
                bindparam("search_match", expression, unique=True))
            self.rank = func.bm25(literal_column("record_search"), *WEIGHTS)  # lower is better
        else:
            expression = search.tsquery_text(q, merchants=merchants)
            self.found = expression is not None
            self.table, self.key = POSTGRES, POSTGRES.c.record_id
            query = func.to_tsquery(literal_column("'german'::regconfig"),
                                    bindparam("search_query", expression, unique=True))
            self.condition = POSTGRES.c.document.op("@@")(query)
            self.rank = -func.ts_rank(POSTGRES.c.document, query)  # ascending like bm25

    def ids(self):
        return select(self.key).select_from(self.table).where(self.condition)


def fill(conn: Connection, batch: int = 2000) -> int:
    """Index every record that has live origins (migration 0011); returns how many."""
    done, last = 0, 0
    while True:
        ids = [r for r, in conn.exec_driver_sql(f"SELECT id FROM records WHERE id > {int(last)} "
                                                f"AND removed_at IS NULL ORDER BY id LIMIT {int(batch)}")]
        if not ids:
            return done
        last = ids[-1]
        found: dict[int, list[Parts]] = {}
        sql = ("SELECT o.record_id, i.title, i.summary, i.content_text, i.tags, i.event_location, i.merchant_id "
               "FROM record_origins o JOIN items i ON i.id = o.item_id "
               f"WHERE o.live AND o.record_id IN ({', '.join(map(str, ids))}) ORDER BY o.record_id, o.item_id")
        for record_id, title, summary, body, tags, location, merchant in conn.exec_driver_sql(sql):
            found.setdefault(record_id, []).append(Parts(title or "", summary or "", body or "",
                                                         json.loads(tags or "[]"), location, merchant))
        write(conn, {record_id: row(conn.dialect.name, origins) for record_id, origins in found.items()})
        done += len(found)
