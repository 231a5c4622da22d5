"""Tests of the books loader, the shared line decoder and the pair counters."""

from pathlib import Path

import pytest

from isotune.data import PairStats, pairs_from_books, read_text_lines
from isotune.errors import ConfigError, DataError

SHARED_BOOKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "books"


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_books_pairs_consecutive_sentences(tmp_path):
    book = write_text(tmp_path / "book.txt", "One two three four. Five six seven eight. Nine ten eleven twelve.\n")
    result = pairs_from_books(book)
    assert result.pairs == [
        ("One two three four.", "Five six seven eight."),
        ("Five six seven eight.", "Nine ten eleven twelve."),
    ]


def test_books_pairs_across_paragraphs(tmp_path):
    book = write_text(tmp_path / "book.txt", "The first paragraph ends here.\n\nThe second one starts here.\n")
    result = pairs_from_books(book)
    assert result.pairs == [("The first paragraph ends here.", "The second one starts here.")]


def test_books_never_pairs_across_files(tmp_path):
    write_text(tmp_path / "b.txt", "Book b starts here. Book b ends here.\n")
    write_text(tmp_path / "a.txt", "Book a starts here. Book a ends here.\n")
    result = pairs_from_books(tmp_path)
    assert result.pairs == [
        ("Book a starts here.", "Book a ends here."),
        ("Book b starts here.", "Book b ends here."),
    ]


def test_books_folder_searched_recursively(tmp_path):
    write_text(tmp_path / "shelf" / "inner.txt", "An inner book starts. An inner book ends.\n")
    write_text(tmp_path / "notes.md", "Not a book at all. Not read by the loader.\n")
    result = pairs_from_books(tmp_path)
    assert result.stats.files == 1
    assert result.source == f"books: 1 file under {tmp_path}"


def test_books_empty_lines_counted(tmp_path):
    text = "Alpha beta gamma delta.\n\n   \n\t\nEpsilon zeta eta theta.\n"
    result = pairs_from_books(write_text(tmp_path / "book.txt", text))
    assert result.stats.empty_lines == 3
    assert result.stats.lines == 5
    assert result.pairs == [("Alpha beta gamma delta.", "Epsilon zeta eta theta.")]


def test_books_hard_wraps_joined(tmp_path):
    text = "The cat sat\non the mat all\nday long. Then it left\n  the room quickly.\n"
    result = pairs_from_books(write_text(tmp_path / "book.txt", text))
    assert result.pairs == [("The cat sat on the mat all day long.", "Then it left the room quickly.")]


def test_books_crlf_line_endings(tmp_path):
    book = tmp_path / "book.txt"
    book.write_bytes(b"The cat sat\r\non the mat.\r\n\r\nThen it left the room.\r\n")
    result = pairs_from_books(book)
    assert result.pairs == [("The cat sat on the mat.", "Then it left the room.")]
    assert result.stats.empty_lines == 1


def test_books_word_bounds_counted(tmp_path):
    text = "Too short. Four words are here. Another four words here. " + "Long" + " long" * 8 + ".\n"
    result = pairs_from_books(write_text(tmp_path / "book.txt", text), min_words=3, max_words=8)
    assert result.stats.too_short == 1
    assert result.stats.too_long == 1
    assert result.stats.sentences == 2
    assert result.pairs == [("Four words are here.", "Another four words here.")]


def test_books_no_max_words(tmp_path):
    text = "Four words are here. " + "Long" + " long" * 98 + ".\n"
    result = pairs_from_books(write_text(tmp_path / "book.txt", text), max_words=None)
    assert result.stats.pairs == 1


def test_books_dropped_sentence_breaks_chain(tmp_path):
    text = "First kept sentence here. Hi. Second kept sentence here. Third kept sentence here.\n"
    result = pairs_from_books(write_text(tmp_path / "book.txt", text))
    assert result.pairs == [("Second kept sentence here.", "Third kept sentence here.")]


def test_books_single_sentence_file_counted(tmp_path):
    write_text(tmp_path / "a.txt", "Only one sentence lives here.\n")
    write_text(tmp_path / "b.txt", "Two sentences live here. This is the second one.\n")
    result = pairs_from_books(tmp_path)
    assert result.stats.single_sentence_files == 1
    assert result.stats.pairs == 1


def test_books_zero_pairs_raises(tmp_path):
    book = write_text(tmp_path / "book.txt", "Only one sentence lives here.\n")
    with pytest.raises(DataError, match="min_words=3, max_words=64"):
        pairs_from_books(book)


def test_books_folder_without_txt_raises(tmp_path):
    write_text(tmp_path / "book.md", "A book in the wrong format. It is not read.\n")
    with pytest.raises(DataError, match=r"No \.txt files found under .*ending in \.txt") as error:
        pairs_from_books(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_books_missing_path_raises(tmp_path):
    with pytest.raises(DataError, match="not found"):
        pairs_from_books(tmp_path / "missing")


def test_books_invalid_utf8_raises(tmp_path):
    book = tmp_path / "cafe.txt"
    book.write_bytes(b"A first line of text.\nUn caf\xe9 noir ici. Deux autres ici.\n")
    with pytest.raises(DataError) as error:
        pairs_from_books(book)
    message = str(error.value)
    assert str(book) in message
    assert "line 2" in message
    assert "byte offset 28" in message
    assert "data.encoding=latin-1" in message
    assert "data.decode_errors=replace" in message


def test_books_replace_counts_undecodable(tmp_path):
    book = tmp_path / "cafe.txt"
    book.write_bytes(b"Un caf\xe9 noir ici. Deux autres sont ici.\nA clean line is here.\n")
    result = pairs_from_books(book, errors="replace")
    assert result.pairs[0][0] == "Un caf\ufffd noir ici."
    assert result.stats.undecodable_lines == 1


def test_books_latin1_decodes(tmp_path):
    book = tmp_path / "cafe.txt"
    book.write_bytes(b"Un caf\xe9 noir ici. Deux autres sont ici.\n")
    result = pairs_from_books(book, encoding="latin-1")
    assert result.pairs[0][0] == "Un café noir ici."
    assert result.stats.undecodable_lines == 0


def test_books_utf8_bom_stripped(tmp_path):
    book = tmp_path / "bom.txt"
    book.write_bytes(b"\xef\xbb\xbfThe first sentence is here. The second is here.\n")
    result = pairs_from_books(book)
    assert result.pairs[0][0] == "The first sentence is here."


def test_books_invalid_errors_mode_raises(tmp_path):
    book = write_text(tmp_path / "book.txt", "One two three. Four five six.\n")
    with pytest.raises(ConfigError, match="'ignore'.*strict, replace"):
        pairs_from_books(book, errors="ignore")


def test_books_unknown_encoding_raises(tmp_path):
    book = write_text(tmp_path / "book.txt", "One two three. Four five six.\n")
    with pytest.raises(ConfigError, match="'klingon'"):
        pairs_from_books(book, encoding="klingon")


def test_books_utf16_encoding_raises(tmp_path):
    book = write_text(tmp_path / "book.txt", "One two three. Four five six.\n")
    with pytest.raises(ConfigError, match="'utf-16'.*Convert the file to UTF-8"):
        pairs_from_books(book, encoding="utf-16")


def test_books_invalid_word_bounds_raise(tmp_path):
    book = write_text(tmp_path / "book.txt", "One two three. Four five six.\n")
    with pytest.raises(ConfigError, match="max_words 2 with min_words 3"):
        pairs_from_books(book, min_words=3, max_words=2)


def test_read_text_lines_counts(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"first\n\nthird \xff\nfourth")
    stats = PairStats()
    lines = read_text_lines(path, encoding="utf-8", errors="replace", stats=stats)
    assert lines == ["first", "", "third \ufffd", "fourth"]
    assert stats.lines == 4
    assert stats.files == 1
    assert stats.undecodable_lines == 1


def test_stats_summary_lists_nonzero():
    stats = PairStats(files=2, lines=1234, empty_lines=56, pairs=1234)
    summary = stats.summary()
    assert summary.splitlines()[0] == "pairs used: 1,234"
    assert "empty lines skipped: 56" in summary.splitlines()
    assert "too long" not in summary


def test_stats_to_dict():
    stats = PairStats(pairs=3, too_short=1)
    assert stats.to_dict() == {
        "files": 0,
        "lines": 0,
        "empty_lines": 0,
        "undecodable_lines": 0,
        "sentences": 0,
        "too_short": 1,
        "too_long": 0,
        "empty_fields": 0,
        "single_sentence_files": 0,
        "pairs": 3,
        "simcse_pairs": 0,
    }


@pytest.mark.skipif(not SHARED_BOOKS.is_dir(), reason="shared books corpus not present")
def test_books_shared_corpus():
    # One of these Gutenberg files is Latin-1, so the default UTF-8 would raise.
    result = pairs_from_books(SHARED_BOOKS, encoding="latin-1")
    assert result.stats.pairs > 10_000
    assert result.stats.empty_lines > 0
    assert result.stats.files == 13
