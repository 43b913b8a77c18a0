"""Source health for the project manager (issue 17): each source's state, worst first, and
its last error in plain German with what to do about it.

States, worst first (`STATES`): a Facebook or Instagram access that must be renewed by the
merchant (`reconnect`), a website that forbids the hub by robots.txt (`robots`), a failing
source (`failing`), a website whose selectors match nothing (`selectors`), a token that
runs out soon or lacks a permission (`token`), a source not read successfully for much
longer than its interval (`stale`), one never fetched yet (`new`), one that pushes its news
(WebSub, `pushing`), and `ok`.

The hub's errors are English and technical where they come from the network (hub.http),
German where they come from Meta (connectors/graph.py); `explain` maps both, by error code
and by message, to a German sentence and what to do. The original message is kept for the
people who run the hub.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Collection

# state -> (label, severity); higher is worse
STATES: dict[str, tuple[str, int]] = {
    "reconnect": ("Muss neu verbunden werden", 100),
    "robots": ("Durch robots.txt gesperrt", 90),
    "failing": ("Gestört", 80),
    "selectors": ("Findet keine Einträge", 70),
    "token": ("Zugang läuft bald ab", 60),
    "stale": ("Veraltet", 50),
    "new": ("Noch nie abgerufen", 30),
    "pushing": ("Meldet sich selbst (Push)", 5),
    "ok": ("In Ordnung", 0),
}
STALE_AFTER_INTERVALS = 3  # a source is stale after this many intervals without a success ...
STALE_AT_LEAST = timedelta(days=1)  # ... and at least this long


@dataclass(frozen=True)
class Explanation:
    what: str  # what is wrong, in plain German
    todo: str  # what to do about it


@dataclass(frozen=True)
class SourceHealth:
    id: str
    merchant_id: str
    merchant_name: str
    connector: str
    state: str
    label: str
    severity: int
    last_ok_at: datetime | None
    last_fetch_at: datetime | None
    error_streak: int
    error: str | None  # the hub's own message
    explanation: Explanation | None
    warnings: list[str] = field(default_factory=list)  # in German where known
    items_week: int = 0
    usual_week: float = 0.0
    next_fetch_at: datetime | None = None
    interval_seconds: int | None = None
    waiting_for_a_person: bool = False

    @property
    def unusually_quiet(self) -> bool:
        """Nothing this week although it usually has more than one a week."""
        return self.items_week == 0 and self.usual_week >= 1

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["usual_week"] = round(self.usual_week, 2)
        data["unusually_quiet"] = self.unusually_quiet
        return data


ROBOTS = Explanation("Die Website verbietet Programmen wie dem Hub, diese Seite zu lesen (robots.txt).",
                     "Bitten Sie den Teilnehmer, den Hub in seiner robots.txt zuzulassen oder einen RSS-Feed "
                     "anzubieten. Bis dahin liest der Hub die Seite nicht.")
SELECTORS = Explanation("Auf der Seite steht nichts mehr dort, wo der Hub die Einträge sucht; die Website wurde "
                        "wahrscheinlich umgebaut.",
                        "Mit „hub try-source --source <id>“ nachsehen, was der Hub findet, und die Selektoren "
                        "(items, fields) in der Konfiguration an die neue Seite anpassen.")

# (error codes, message pattern, explanation): the first rule that matches wins. A rule
# matches by code if the source's last error code is one of its codes, else by its pattern.
_RULES: list[tuple[frozenset[str], str | None, Explanation]] = [
    (frozenset({"token_invalid"}), r"Facebook-Zugang ungültig|access token|OAuthException|Code 190",
     Explanation("Der Facebook- oder Instagram-Zugang ist abgelaufen oder wurde widerrufen.",
                 "Bitten Sie den Teilnehmer, die Seite in Facebook neu mit der App zu verbinden. Dann mit "
                 "„hub facebook pages“ ein neues Seiten-Token erzeugen und access_token in der Konfiguration "
                 "ersetzen. Bis dahin ruft der Hub diese Quelle nicht mehr ab.")),
    (frozenset({"needs_person"}), None,
     Explanation("Diese Quelle wartet darauf, dass jemand etwas ändert.",
                 "Die Meldung unten sagt, was zu tun ist; nach der Änderung der Konfiguration versucht der Hub "
                 "es wieder.")),
    (frozenset(), r"robots\.txt (of|von) \S+ (could not be read|answered HTTP|konnte nicht)",
     Explanation("Die robots.txt der Website ist gerade nicht lesbar; solange liest der Hub dort keine Seite.",
                 "Meist vorübergehend (ein Fehler auf dem Server der Website); der Hub versucht es weiter. Hält es "
                 "an, den Teilnehmer informieren.")),
    (frozenset({"robots_blocked", "robots_disallowed", "blocked_by_robots"}), r"robots\.txt|robots", ROBOTS),
    (frozenset({"selectors_matched_nothing", "nothing_matched", "no_entries"}),
     r"matched nothing|selectors? .*(nothing|no )|fanden nichts|keine Einträge auf", SELECTORS),
    (frozenset({"graph_permission_missing"}), r"Berechtigung .* fehlt",
     Explanation("Facebook verweigert eine Berechtigung, die der Hub braucht.",
                 "Der Teilnehmer muss die Seite neu verbinden und dabei alle erbetenen Berechtigungen "
                 "erlauben.")),
    (frozenset({"graph_throttled"}), r"Facebook bremst",
     Explanation("Facebook lässt gerade nur wenige Abfragen zu.",
                 "Nichts zu tun: der Hub wartet so lange, wie Facebook es verlangt, und holt dann alles nach.")),
    (frozenset({"graph_blocked"}), r"vorübergehend gesperrt",
     Explanation("Facebook hat die Seite vorübergehend gesperrt.",
                 "Bitte mit dem Teilnehmer klären, was Facebook beanstandet; der Hub fragt einmal am Tag nach.")),
    (frozenset({"graph_not_found"}), r"Facebook kennt .* nicht",
     Explanation("Facebook kennt diese Seite nicht (mehr): gelöscht, nicht öffentlich oder falsche ID.",
                 "Die page_id bzw. ig_user_id in der Konfiguration prüfen und den Teilnehmer fragen.")),
    (frozenset(), r"HTTP 404|HTTP 410|file not found|feed was removed|removed this feed",
     Explanation("Unter dieser Adresse gibt es nichts (mehr): die Seite oder der Feed wurde verschoben oder "
                 "gelöscht.",
                 "Den Teilnehmer nach der neuen Adresse fragen (oft hat sich nach einem Website-Umbau nur der "
                 "Pfad geändert) und url in der Konfiguration ändern.")),
    (frozenset(), r"HTTP 401|HTTP 403|refuses access",
     Explanation("Die Website lässt den Hub nicht herein (Anmeldung nötig oder Zugriff gesperrt).",
                 "Den Teilnehmer bitten, den Feed öffentlich zu machen oder den Hub nicht zu sperren "
                 "(z. B. in einer Firewall oder einem Sicherheits-Plugin).")),
    (frozenset(), r"HTTP 429|slow down",
     Explanation("Die Website bittet um weniger Abrufe.",
                 "Nichts dringend: der Hub wartet. Dauert es an, in der Konfiguration ein längeres every: "
                 "für diese Quelle eintragen.")),
    (frozenset(), r"HTTP 5\d\d|server has a problem",
     Explanation("Der Server der Website hat gerade ein Problem.",
                 "Meist vorübergehend; der Hub versucht es selbst wieder. Hält es über Tage an, den "
                 "Teilnehmer informieren.")),
    (frozenset(), r"cannot resolve host|DNS",
     Explanation("Den Namen der Website gibt es nicht (mehr), oder er ist gerade nicht auffindbar.",
                 "Die Adresse auf Tippfehler prüfen. Stimmt sie, ist die Domain vielleicht abgelaufen: den "
                 "Teilnehmer fragen.")),
    (frozenset(), r"TLS|SSL|certificate|HTTPS",
     Explanation("Die sichere Verbindung (HTTPS) zur Website ist gestört, zum Beispiel durch ein abgelaufenes "
                 "Zertifikat.",
                 "Der Betreiber der Website muss das Zertifikat erneuern; bitte den Teilnehmer informieren.")),
    (frozenset({"address_blocked"}), r"refused to connect to",
     Explanation("Die Adresse zeigt in ein internes Netz; das erlaubt der Hub zum Schutz des Servers nicht.",
                 "Die Adresse prüfen. Ist es wirklich ein internes System, seine Adresse in "
                 "fetcher.allowed_networks eintragen.")),
    (frozenset(), r"no answer within|could not connect|refused the connection|sent nothing for|cannot connect|"
                  r"broke off|unreachable",
     Explanation("Der Server der Quelle ist nicht erreichbar oder antwortet zu langsam.",
                 "Meist vorübergehend; der Hub versucht es weiter. Hält es an, den Teilnehmer fragen, ob "
                 "die Website umgezogen ist.")),
    (frozenset({"response_too_large"}), r"larger than",
     Explanation("Die Antwort der Website ist zu groß.",
                 "Den Teilnehmer bitten, weniger Einträge in den Feed zu stellen, oder "
                 "fetcher.max_body_bytes erhöhen.")),
    (frozenset({"parse_failed"}), r"not a feed|HTML page|cannot be read|not valid JSON|not RSS or Atom|"
                                  r"JSON Feed|payload cannot be read",
     Explanation("Unter der Adresse steht kein lesbarer Feed (mehr), oder er ist beschädigt.",
                 "Die Adresse im Browser öffnen: zeigt sie eine normale Webseite, den Teilnehmer nach der "
                 "Adresse seines Feeds fragen; ist der Feed beschädigt, den Teilnehmer bitten, ihn zu "
                 "reparieren.")),
    (frozenset({"connector_crashed"}), r"this is a bug",
     Explanation("Ein Programmfehler im Hub hat das Lesen dieser Quelle verhindert.",
                 "Bitte die Meldung unten und das Protokoll (Log) an die Betreuer des Hubs schicken.")),
]
_NOTHING_FOUND = re.compile(r"matched nothing|fanden nichts|keine Einträge auf", re.IGNORECASE)
_FALLBACK = Explanation("Der letzte Abruf ist fehlgeschlagen.",
                        "Der Hub versucht es selbst weiter. Hält der Fehler an, die technische Meldung unten an "
                        "die Betreuer des Hubs weitergeben.")
_COMPILED = [(codes, re.compile(pattern, re.IGNORECASE) if pattern else None, e) for codes, pattern, e in _RULES]

# Warnings the connectors give (English), in German.
_WARNINGS = [
    (re.compile(r"^selectors matched nothing", re.I), "Die Selektoren finden auf der Seite nichts mehr."),
    (re.compile(r"skipped an entry with neither id, link(,| nor) title", re.I),  # (older: "... nor title")
     "Ein Eintrag ohne Kennung, Link, Titel und Datum wurde übersprungen."),
    (re.compile(r"entry id .* appears twice", re.I), "Ein Eintrag kommt doppelt vor; der erste wurde genommen."),
    (re.compile(r"entries share their id with others", re.I),
     "Mehrere Einträge des Feeds tragen dieselbe Kennung (ein Fehler des Systems, das ihn schreibt); "
     "der Hub unterscheidet sie an ihren Links."),
]


def explain(error: str | None, code: str | None = None) -> Explanation | None:
    """What an error of a source means and what to do, in German; None without an error."""
    if not error and not code:
        return None
    for codes, pattern, explanation in _COMPILED:
        if code and code in codes:
            return explanation
    for codes, pattern, explanation in _COMPILED:
        if pattern is not None and error and pattern.search(error):
            return explanation
    return _FALLBACK


def german_warning(warning: str) -> str:
    for pattern, text in _WARNINGS:
        if pattern.search(warning):
            return text
    return warning


def state_of(status, code: str | None, token_warnings: list[str], schedule, now: datetime) -> str:
    """The state of a source (`STATES`), from `hub.store.SourceStatus`, its last error code and
    its schedule (`hub.store.scheduling.SourceSchedule` or None)."""
    error = status.last_error or ""
    if status.status == "failing":
        explanation = explain(error, code)
        if status.held is not None or code == "token_invalid":
            return "reconnect"
        if explanation is ROBOTS:
            return "robots"
        if explanation is SELECTORS:
            return "selectors"
        return "failing"
    if any(_NOTHING_FOUND.search(w) for w in status.warnings):
        return "selectors"
    if token_warnings:
        return "reconnect" if any("ungültig" in w for w in token_warnings) else "token"
    if status.status == "new" or status.last_ok_at is None:
        return "new"
    interval = timedelta(seconds=schedule.interval_seconds) if schedule and schedule.interval_seconds else timedelta(hours=24)
    if now - status.last_ok_at > max(STALE_AT_LEAST, STALE_AFTER_INTERVALS * interval):
        return "stale"
    if schedule is not None and schedule.push_state == "live":
        return "pushing"
    return "ok"


def report(settings, store, now: datetime | None = None) -> list[SourceHealth]:
    """Every configured source's health, worst first."""
    from hub.store.scheduling import ScheduleStore
    from hub.store.stats import StatsStore

    now = now or datetime.now(timezone.utc)
    configured = {s.id: m for m, s in settings.sources()}
    schedules = ScheduleStore(store).source_schedules()
    stats = StatsStore(store)
    codes, weekly = stats.error_codes(), stats.items_per_week(now)
    found = []
    for s in store.source_statuses(item_counts=False):
        merchant = configured.get(s.id)
        if merchant is None:
            continue
        state = state_of(s, codes.get(s.id), s.token_warnings, schedules.get(s.id), now)
        label, severity = STATES[state]
        week, usual = weekly.get(s.id, (0, 0.0))
        plan = schedules.get(s.id)
        problem = explain(s.last_error, codes.get(s.id)) if s.status == "failing" else None
        if problem is None and state == "selectors":
            problem = SELECTORS
        found.append(SourceHealth(
            id=s.id, merchant_id=s.merchant_id, merchant_name=merchant.name, connector=s.connector, state=state,
            label=label, severity=severity, last_ok_at=s.last_ok_at, last_fetch_at=s.last_fetch_at,
            error_streak=s.error_count, error=s.last_error if s.status == "failing" else None, explanation=problem,
            warnings=[german_warning(w) for w in s.warnings] + list(s.token_warnings), items_week=week,
            usual_week=usual, next_fetch_at=plan.next_fetch_at if plan else None,
            interval_seconds=plan.interval_seconds if plan else None, waiting_for_a_person=s.held is not None))
    return sorted(found, key=_worst_first)


def _worst_first(h: SourceHealth) -> tuple:
    last_ok = h.last_ok_at.timestamp() if h.last_ok_at else 0.0
    return (-h.severity, -h.error_streak, last_ok, h.merchant_name.casefold(), h.id)


def counts(found: list[SourceHealth]) -> dict[str, int]:
    """state -> how many sources are in it (every state, zeros too)."""
    tally = dict.fromkeys(STATES, 0)
    for h in found:
        tally[h.state] += 1
    return tally


def state_counts(configured: Collection[str], store, now: datetime | None = None) -> dict[str, int]:
    """What `counts(report(...))` says of the `configured` source ids, without building each
    source's report: per source only what `state_of` reads (for /metrics, whose town may have
    100,000 sources)."""
    from hub.store.stats import StatsStore

    now = now or datetime.now(timezone.utc)
    tally = dict.fromkeys(STATES, 0)
    for source, code, token_warnings, plan in StatsStore(store).source_states(now):
        if source.id in configured:
            tally[state_of(source, code, token_warnings, plan, now)] += 1
    return tally
