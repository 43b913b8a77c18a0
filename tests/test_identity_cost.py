"""What fingerprinting a post costs beyond its own features (issue 11, point 5): nothing that
grows with the number of posts a long-running process has seen, and the same fingerprint
whichever way the text is scanned for prices."""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import islice, permutations

from hub import identity
from hub.identity import features, prices
from hub.models import Item

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
VOCABULARY = "Bäckerei Stollen Brötchen Wochenmarkt Angebot Rathaus Verein Konzert Lesung Flohmarkt".split()
TITLES = [" ".join(words) for words in islice(permutations(VOCABULARY, 4), 2001)]  # each one of a kind


def post(n: int, text: str = "") -> Item:
    """Post number n: a title of its own made of a small vocabulary, as a merchant's posts are."""
    title = TITLES[n]
    return Item(source_id="s1", merchant_id="m1", external_id=f"p{n}", title=title,
                content_html=f"<p>{text or title}</p>", content_text=text or title, published=T0)


def test_word_hash_cache_does_not_grow_with_every_post():
    """A title as a whole is a key of its own for each post; caching its hash beside the
    words' made the cache grow by one entry per post for as long as `hub run` lived."""
    features(post(0, " ".join(VOCABULARY)), at=T0, zone="Europe/Berlin")  # the words are cached now
    before = len(identity._HASHES)
    for n in range(1, 2001):
        features(post(n), at=T0, zone="Europe/Berlin")
    assert len(identity._HASHES) == before  # 2,000 titles of their own, no word that is new


def test_prices_are_found_in_title_text_and_summary_alike():
    def found(item: Item) -> frozenset[str]:
        return features(item, at=T0, zone="Europe/Berlin").prices

    assert found(post(1, "Brötchen heute nur 0,45 € das Stück")) == {"0.45"}
    assert found(post(2, "Stollen für 12 EUR, Dinkelbrot 4,20 Euro")) == {"12.00", "4.20"}
    assert found(post(3, "Stollen im Angebot, frisch aus dem Ofen")) == frozenset()
    with_summary = Item(source_id="s1", merchant_id="m1", external_id="p4", title="Angebot der Woche",
                        content_html="<p>Alles frisch aus dem Ofen.</p>", content_text="Alles frisch aus dem Ofen.",
                        summary="Nur heute: 3,50 eur",
                        published=T0)
    assert found(with_summary) == {"3.50"}
    assert prices("Brötchen 0,45 €") == ["0.45"]  # the scan itself is unchanged


def test_an_eur_inside_a_word_names_no_amount_and_one_after_a_digit_does():
    """Texts with "neuer", "teuer" or "Feuerwehr" are read for € signs alone (the full
    expression costs ~10 µs a post); an amount before EUR, also across the title's end, is found."""
    def found(title: str, text: str) -> frozenset[str]:
        item = Item(source_id="s1", merchant_id="m1", external_id="p", title=title, content_html=f"<p>{text}</p>",
                    content_text=text, published=T0)
        return features(item, at=T0, zone="Europe/Berlin").prices

    assert found("Neuer Stollen bei der Feuerwehr", "Nicht teuer: 4,50 € das Stück") == {"4.50"}
    assert found("Feuerwehrfest", "Eintritt 3\u00a0EUR, Bratwurst 2 Euro") == {"3.00", "2.00"}
    assert found("Stollen für 12", "EUR im Vorverkauf") == {"12.00"}
    assert found("Neuer Termin", "Die Feuerwehr übt am 12. Dezember") == frozenset()
    assert prices("Eintritt 5 eurO und 7 euros") == ["5.00"]  # as before: "euros" is no currency
