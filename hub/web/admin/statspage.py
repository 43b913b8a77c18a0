"""Proof of success (`/admin/stats`) and its CSV (`/admin/stats.csv`), one month at a time.

The page shows the month's totals, charts per day (SVG drawn here), and tables per merchant,
per channel, of the most read records and of the search terms. The CSV has one line per day,
measure, merchant, channel and detail: what a council report's spreadsheet wants.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hub import stats
from hub.activity import next_month
import hub.web.admin.charts as charts
from hub.web.admin.core import NO_STORE, Cockpit
from hub.web.admin.pages import month_choices, month_param

CHARTS = [
    ("Aufrufe pro Tag", [("record_view", "s1"), ("merchant_view", "s2"), ("page_view", "s3")]),
    ("Suchen und Klicks pro Tag", [("search", "s1"), ("click", "s2")]),
    ("Feeds und API pro Tag", [("feed_request", "s1"), ("api_request", "s2")]),
    ("Zustellungen pro Tag", [("newsletter_delivery", "s1"), ("channel_delivery", "s2")]),
]
CHANNEL_NAMES = {"web": "Website", "feed": "Feeds", "api": "API"}


def add(router: APIRouter, cockpit: Cockpit) -> None:
    @router.get("/admin/stats")
    def stats_page(request: Request, monat: str = "", month: str = ""):
        user = cockpit.page_user(request)
        month = month_param(monat or month, cockpit)  # ?monat=2026-05 (or ?month=)
        stats.flush(cockpit.store)  # this process's counts so far, too
        rows = stats.month_rows(cockpit.store, month, cockpit.settings.platform.timezone)
        days = _days(month)
        totals = Counter()
        per_day: dict[str, Counter] = defaultdict(Counter)
        merchants: dict[str, Counter] = defaultdict(Counter)
        channels: dict[str, Counter] = defaultdict(Counter)
        terms, records = Counter(), Counter()
        for r in rows:
            totals[r.event] += r.n
            per_day[r.event][r.day] += r.n
            if r.merchant_id:
                merchants[r.merchant_id][r.event] += r.n
            channels[r.channel or "–"][r.event] += r.n
            if r.event == "search":
                terms[r.subject] += r.n
            elif r.event == "record_view" and r.subject.isdigit():
                records[int(r.subject)] += r.n
        drawn = [(title, charts.bars(days, [charts.Series(stats.EVENTS[e], css, [per_day[e][d] for d in days])
                                            for e, css in series], title), series) for title, series in CHARTS]
        top = [(cockpit.store.records.get(i), n) for i, n in records.most_common(10)]
        return cockpit.render(request, "stats.html", user, month=month, totals=totals, events=stats.EVENTS,
                              charts=drawn, merchants=sorted(merchants.items(), key=lambda kv: -sum(kv[1].values())),
                              channels=sorted(channels.items()), channel_names=CHANNEL_NAMES,
                              terms=terms.most_common(25), top=[(r, n) for r, n in top if r is not None],
                              names={m.id: m.name for m in cockpit.settings.merchants},
                              choices=month_choices(cockpit))

    @router.get("/admin/stats.csv")
    def stats_csv(request: Request, monat: str = "", month: str = ""):
        user = cockpit.page_user(request)
        month = month_param(monat or month, cockpit)
        stats.flush(cockpit.store)
        rows = stats.month_rows(cockpit.store, month, cockpit.settings.platform.timezone)
        names = {m.id: m.name for m in cockpit.settings.merchants}
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["Datum", "Kennzahl", "Teilnehmer", "Kanal", "Detail", "Anzahl"])
        for r in rows:
            writer.writerow([r.day.isoformat(), stats.EVENTS.get(r.event, r.event), names.get(r.merchant_id, r.merchant_id),
                             CHANNEL_NAMES.get(r.channel, r.channel), _detail(r), r.n])
        cockpit.admin.log(user.name, "stats_export", month.isoformat()[:7], rows=len(rows))
        filename = f"statistik-{month.isoformat()[:7]}.csv"
        return Response(out.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"', **NO_STORE})


def _days(month: date) -> list[date]:
    days, day = [], month
    while day < next_month(month):
        days.append(day)
        day += timedelta(days=1)
    return days


def _detail(row: stats.Row) -> str:
    if row.event in ("record_view", "click") and row.subject.isdigit():
        return f"Beitrag {row.subject}"
    return row.subject
