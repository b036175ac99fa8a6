"""A deterministic library of eight made-up novels: the test suite's own text corpus.

The end-to-end tests need text that looks like what users feed word count: prose in paragraphs, a
vocabulary with a long Zipf tail, names, punctuation, quotes and apostrophes. They also need the edges
that real files have and tidy samples lack, so each book carries some on purpose:

- every book: accented, combining, CJK, Greek, Cyrillic, Arabic-Indic digits, ligatures, superscripts,
  Roman-numeral letters, letters outside the BMP, tabs, no-break spaces and U+2028 inside lines;
- `pg-being_ernest.txt` starts with a UTF-8 byte-order mark;
- `pg-grimm.txt` ends its lines with CRLF;
- `pg-huckleberry_finn.txt` has paragraphs that are single lines of 100-200 KB (longer than a test split);
- `pg-frankenstein.txt` has a few bytes that are not UTF-8 (read as U+FFFD);
- `pg-metamorphosis.txt` ends without a final newline.

File names and byte sizes are those of a well-known public-domain sample, so tests that cut splits of a
given size get the same number of map tasks. The same seed always gives byte-identical files.
"""

from __future__ import annotations

import functools
import itertools
import random
from pathlib import Path

# name -> (size in bytes, the characters' names that recur in it)
BOOKS: dict[str, tuple[int, tuple[str, ...]]] = {
    "pg-being_ernest.txt": (138_885, ("Jack", "Algernon", "Gwendolen", "Cecily", "Lady", "Bracknell", "Ernest")),
    "pg-dorian_gray.txt": (453_168, ("Dorian", "Gray", "Basil", "Hallward", "Henry", "Wotton", "Sibyl")),
    "pg-frankenstein.txt": (441_033, ("Victor", "Frankenstein", "Elizabeth", "Clerval", "Justine", "Walton")),
    "pg-grimm.txt": (540_174, ("Hansel", "Gretel", "Rapunzel", "king", "queen", "witch", "wolf")),
    "pg-huckleberry_finn.txt": (594_262, ("Huck", "Jim", "Tom", "Sawyer", "Finn", "Duke", "King")),
    "pg-metamorphosis.txt": (139_054, ("Gregor", "Samsa", "Grete", "mother", "father", "chief", "clerk")),
    "pg-sherlock_holmes.txt": (581_863, ("Holmes", "Watson", "Lestrade", "Irene", "Adler", "Baker", "Street")),
    "pg-tom_sawyer.txt": (412_665, ("Tom", "Becky", "Thatcher", "Huck", "Polly", "Injun", "Joe")),
}

_COMMON = """the of and to a in that it was he i his you her she had with for as not at but on be is my
him this all they by have so which from me we were said one would there no what or when their them
if could an out up been into then more about who now some will time man like upon very over only
little do any before know can your see other down old our again after should did must great made
how good where much day way never such first shall its two may well those thought say come long
these through us eyes face hand house without here own went last night came while life think same
back himself left room went told seen made away door yet once even under nothing young still heart
mind light moment word place right something thing every answered cried looked asked turned began
felt stood head voice round another found friend poor dear black white whole half world morning""".split()

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "an", "el", "is", "or", "um", "th",
              "st", "qu", "br", "ch", "dr", "ow", "ea", "ing", "ly", "er"]

# Words and marks that trip up word splitting and decoding; each book draws a few of them per paragraph.
_TRICKY = ["café", "naïve", "Zürich", "straße", "Ærø", "re\u0301sume\u0301", "ﬁne", "ǅungla", "x²", "½",
           "Ⅻ", "ⅸ", "東京", "日本語の本", "Ἀθῆναι", "Москва", "٣٤", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙", "ʰaha",
           "don’t", "Holmes’s", "—", "«oui»", "¿qué?", "co-operate", "_under_", "A.D.", "9th"]
_ODD_SPACES = ["\t", "\u00a0", "\u2028", "  "]
_ENDS = [".", ".", ".", ".", "?", "!", ";", ":"]
_WIDTH = 72


def vocabulary(rng: random.Random, size: int = 20_000) -> list[str]:
    """Common English words first (the head of the Zipf curve), then made-up words for the long tail."""
    words = dict.fromkeys(_COMMON)
    while len(words) < size:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
        words[word.capitalize() if rng.random() < 0.05 else word] = None
    return list(words)


def _sentence(rng: random.Random, words: list[str], weights: list[float], names: tuple[str, ...]) -> str:
    picked = rng.choices(words, cum_weights=weights, k=rng.randint(4, 22))
    for i in range(len(picked)):
        roll = rng.random()
        if roll < 0.06:
            picked[i] = rng.choice(names)
        elif roll < 0.075:
            picked[i] = rng.choice(_TRICKY)
        elif roll < 0.09:
            picked[i] += ","
    text = " ".join(picked)
    text = text[0].upper() + text[1:] + rng.choice(_ENDS)
    if rng.random() < 0.15:
        text = f"“{text}” said {rng.choice(names)}."
    if rng.random() < 0.02:
        text = text.replace(" ", rng.choice(_ODD_SPACES), 1)
    return text


def _wrap(paragraph: str) -> list[str]:
    """Greedy wrap at _WIDTH characters, as typeset books are."""
    lines, line = [], ""
    for word in paragraph.split(" "):
        if line and len(line) + 1 + len(word) > _WIDTH:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines


def _text(name: str, size: int, names: tuple[str, ...], words: list[str], weights: list[float],
          rng: random.Random) -> str:
    parts: list[str] = []
    written = 0
    for chapter in itertools.count(1):
        heading = f"CHAPTER {_roman(chapter)}.\n\n"
        parts.append(heading)
        written += len(heading.encode())
        for _ in range(rng.randint(8, 30)):
            n_sentences = rng.randint(2, 9)
            long_line = name == "pg-huckleberry_finn.txt" and rng.random() < 0.01
            if long_line:
                n_sentences = rng.randint(1000, 2000)
            paragraph = " ".join(_sentence(rng, words, weights, names) for _ in range(n_sentences))
            block = (paragraph if long_line else "\n".join(_wrap(paragraph))) + "\n\n"
            parts.append(block)
            written += len(block.encode())
            if written >= size:
                return "".join(parts)
    raise AssertionError("unreachable")


def _roman(number: int) -> str:
    out = ""
    for value, letters in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while number >= value:
            out += letters
            number -= value
    return out


def _fit(data: bytes, size: int, final_newline: bool) -> bytes:
    """Cut (on a character boundary) or pad with spaces to exactly `size` bytes."""
    body = size - 1 if final_newline else size
    end = min(body, len(data))
    while end < len(data) and 0x80 <= data[end] < 0xC0:   # a continuation byte: back up to its character's start
        end -= 1
    cut = data[:end].rstrip(b"\r\n") if final_newline else data[:end]
    return cut + b" " * (body - len(cut)) + (b"\n" if final_newline else b"")


@functools.cache
def _zipf_words(seed: int) -> tuple[list[str], list[float]]:
    """The library's vocabulary and its cumulative Zipf weights, shared by every book."""
    words = vocabulary(random.Random(seed))
    return words, list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(words))))


@functools.cache
def book_bytes(name: str, seed: int = 1843) -> bytes:
    """One book's exact bytes."""
    size, names = BOOKS[name]
    words, weights = _zipf_words(seed)
    rng = random.Random(f"{seed}:{name}")
    text = _text(name, size, names, words, weights, rng)
    if name == "pg-grimm.txt":
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8")
    if name == "pg-being_ernest.txt":
        data = b"\xef\xbb\xbf" + data
    if name == "pg-frankenstein.txt":
        for at, junk in ((20_011, b"\xff"), (150_003, b"\xc3("), (300_007, b"\xe2\x82"), (400_009, b"\x80\x80")):
            space = data.index(b" ", at)   # between words, never inside a character
            data = data[:space] + b" " + junk + data[space:]
    return _fit(data, size, final_newline=name != "pg-metamorphosis.txt")


def write_books(folder: Path, seed: int = 1843) -> Path:
    """Write the eight books into `folder` (made if missing) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in BOOKS:
        (folder / name).write_bytes(book_bytes(name, seed))
    return folder
