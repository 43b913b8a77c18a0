"""The newsletter's message bytes: quoted-printable pieces filled per recipient decode to the
personal text, no line is longer than RFC 2045 allows, and headers with umlauts are encoded."""

from __future__ import annotations

import email
import quopri
from datetime import datetime, timezone
from email import policy

from hypothesis import given, settings, strategies as st

from hub.newsletter import mime

MARKS = ("@@MANAGE@@", "@@UNSUBSCRIBE@@")
links = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABC0123456789-_.~/:?=&%"), min_size=1,
                max_size=160)
texts = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300), min_size=3,
                 max_size=3)


@settings(max_examples=300, deadline=None)
@given(texts, links, links)
def test_a_filled_body_decodes_to_the_personal_text_and_keeps_lines_short(parts, manage, unsubscribe):
    body = parts[0] + MARKS[0] + parts[1] + MARKS[1] + parts[2]
    filled = mime.Fillable(body, MARKS).fill({MARKS[0]: manage, MARKS[1]: unsubscribe})
    expected = body.replace(MARKS[0], manage).replace(MARKS[1], unsubscribe)
    expected = expected.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    assert quopri.decodestring(filled).decode("utf-8") == expected
    assert all(len(line) <= 76 for line in filled.split(b"\r\n"))
    assert b"\n" not in filled.replace(b"\r\n", b"")


def test_a_whole_message_parses_with_both_parts_and_encoded_headers():
    env = mime.envelope("Bürgerbüro Musterstadt <post@musterstadt.example>", "Die Woche in Müsterstadt – Advent",
                        "post@musterstadt.example", "Wöchentliche Post", "wochenpost",
                        datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc))
    link = "https://musterstadt.example/newsletter/unsubscribe/u.7.abc.DEF=="
    text = mime.Fillable("Hallo\n" + "ä" * 200 + "\nAbbestellen: @@UNSUBSCRIBE@@\n", MARKS).fill({MARKS[1]: link})
    html = mime.quoted("<p>" + "Grüße " * 40 + "</p>")
    data = mime.newsletter(env, "anna@bäckerei.example", 7, link, text, html,
                           datetime(2026, 11, 20, 6, 0, 5, tzinfo=timezone.utc))
    message = email.message_from_bytes(data, policy=policy.default)
    assert message["Subject"] == "Die Woche in Müsterstadt – Advent"
    assert message["From"].addresses[0].display_name == "Bürgerbüro Musterstadt"
    assert message["To"] == "anna@xn--bckerei-5wa.example"  # the domain as SMTP carries it
    assert message["Message-ID"] == "<wochenpost.202611200600.7@musterstadt.example>"
    assert message["List-Id"].endswith("<wochenpost.musterstadt.example>")
    assert message["List-Unsubscribe"] == f"<{link}>"
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n").endswith(f"Abbestellen: {link}\n")
    assert "Grüße" in message.get_body(("html",)).get_content()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert data.isascii()
