"""TVmaze show dumps: both page shapes parse into item text rows; bad entries are named."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from data_contracts.sources import SourceError
from data_contracts.sources.tvmaze import SHOW_COLUMNS, html_to_text, read_tvmaze, tvmaze_files
from tests.data_contracts.conftest import tvmaze_show, write_tvmaze_pages


def test_html_summary_becomes_plain_text():
    markup = (
        "<p><b>Kirby</b>'s <em>town</em> &amp; &quot;friends&quot;<br/>run&eacute;</p>"
        "<p>Next:  5 &lt; 6</p>"
    )
    assert html_to_text(markup) == "Kirby's town & \"friends\" runé Next: 5 < 6"


def test_both_page_shapes_give_one_row_per_show(tmp_path):
    page0 = [
        tvmaze_show(1, "Under the Dome", genres=["Drama", "Science-Fiction"], premiered="2013-06-24",
             webChannel={"id": 1, "name": "Netflix"},
             summary="<p><b>Under the Dome</b> is the story of a small town &amp; a dome.</p>"),
    ]
    page1 = [
        tvmaze_show(250, "Kirby Buckets", network={"id": 25, "name": "Disney XD"}, premiered=None,
                    genres=[]),
        tvmaze_show(251, "Web Only", network=None, webChannel={"id": 83, "name": "Hulu"}),
    ]
    shows = read_tvmaze(write_tvmaze_pages(tmp_path, page0, page1)).shows
    assert list(shows.columns) == list(SHOW_COLUMNS)
    rows = shows.set_index("tvmaze_id").to_dict("index")
    assert list(rows) == [1, 250, 251]
    assert rows[1] == {
        "title": "Under the Dome", "kind": "tv", "release_date": "2013-06-24",
        "genres": "Drama|Science-Fiction", "network": "Netflix",  # page 0: webChannel only
        "description": "Under the Dome is the story of a small town & a dome.",
    }
    assert (rows[250]["network"], rows[250]["release_date"], rows[250]["genres"]) == ("Disney XD", "", "")
    assert rows[251]["network"] == "Hulu"  # network null: falls back to webChannel


def test_network_is_preferred_over_web_channel_and_absent_both_give_empty(tmp_path):
    both = tvmaze_show(5, network={"name": "BBC One"}, webChannel={"name": "BBC iPlayer"})
    neither = tvmaze_show(6, network=None, webChannel=None)
    shows = read_tvmaze(write_tvmaze_pages(tmp_path, [], [both, neither])).shows
    assert shows["network"].tolist() == ["BBC One", ""]


def test_missing_summaries_are_counted_not_dropped(tmp_path, caplog):
    entries = [tvmaze_show(1), tvmaze_show(2, summary=None), tvmaze_show(3, summary=""),
               tvmaze_show(4, summary="<p> </p>")]
    entries[1].pop("summary")
    with caplog.at_level(logging.WARNING, logger="data_contracts.sources.tvmaze"):
        read = read_tvmaze(write_tvmaze_pages(tmp_path, [], entries))
    assert len(read.shows) == 4
    assert read.missing_summary == 3
    assert read.shows["description"].tolist() == ["The story of show 1.", "", "", ""]
    assert "3 of 4 shows have no summary" in caplog.text


def test_duplicate_ids_across_files_keep_the_first_and_are_counted(tmp_path, caplog):
    page0 = [tvmaze_show(1, "First copy"), tvmaze_show(2)]
    page1 = [tvmaze_show(1, "Second copy"), tvmaze_show(3), tvmaze_show(3)]
    with caplog.at_level(logging.WARNING, logger="data_contracts.sources.tvmaze"):
        read = read_tvmaze(write_tvmaze_pages(tmp_path, page0, page1))
    assert read.shows["tvmaze_id"].tolist() == [1, 2, 3]
    assert read.shows["title"].tolist()[0] == "First copy"
    assert read.duplicates == 2
    assert "2 entries repeat a show id" in caplog.text


def test_a_folder_and_a_comma_separated_list_read_the_same_files(tmp_path):
    first, second = write_tvmaze_pages(tmp_path, [tvmaze_show(1)], [tvmaze_show(2)])
    packed = tmp_path / "more" / "shows_page2.json.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(json.dumps([tvmaze_show(3)]).encode()))
    assert tvmaze_files(tmp_path) == [first, second]  # sorted by name, folders not entered
    assert tvmaze_files(f"{first}, {second},{packed}") == [first, second, packed]
    assert read_tvmaze(f"{first},{packed}").shows["tvmaze_id"].tolist() == [1, 3]
    assert read_tvmaze(tmp_path).files == (first, second)


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        ("just text", ["entry 1:", "expected a show object, found str"]),
        ({"name": "No id"}, ["entry 1:", "'id' is missing or not a positive integer (None)"]),
        (tvmaze_show(0), ["entry 1:", "'id' is missing or not a positive integer (0)"]),
        (tvmaze_show(7, name=" "), ["entry 1 (id 7)", "'name' must be a non-empty string"]),
        (tvmaze_show(7, genres="Drama"), ["entry 1 (id 7)", "'genres' must be a list of strings", "'Drama'"]),
        (tvmaze_show(7, premiered="June 2013"), ["entry 1 (id 7)", "'premiered' must be \"YYYY-MM-DD\""]),
        (tvmaze_show(7, summary=["<p>x</p>"]), ["entry 1 (id 7)", "'summary' must be an HTML string"]),
        (tvmaze_show(7, network="CBS"), ["entry 1 (id 7)", "'network' must be an object"]),
        (tvmaze_show(7, network=None, webChannel={"name": 3}), ["entry 1 (id 7)", "'webChannel' must be"]),
    ],
)
def test_bad_entries_name_the_file_the_entry_and_the_field(tmp_path, entry, names):
    _, page1 = write_tvmaze_pages(tmp_path, [tvmaze_show(1)], [tvmaze_show(2), entry])
    with pytest.raises(SourceError) as caught:
        read_tvmaze([tmp_path / "shows_page0.json", page1])
    message = str(caught.value)
    assert message.startswith(f"{page1}: entry 1")
    for part in names:
        assert part in message


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('[{"id": 1,', "not valid JSON (line 1, column 11"),
        ('{"page": []}',
         "expected a JSON array of shows or {\"shows\": [...]}, found an object with keys ['page']"),
        ("42", "found int"),
    ],
)
def test_a_file_that_is_not_a_dump_is_named(tmp_path, content, says):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(SourceError, match="broken.json") as caught:
        read_tvmaze(path)
    assert says in str(caught.value)


def test_missing_files_and_empty_folders_are_named(tmp_path):
    with pytest.raises(SourceError, match=r"TVmaze item text file .*nowhere.json does not exist"):
        read_tvmaze(f"{tmp_path}/nowhere.json")
    with pytest.raises(SourceError, match="holds no \\*.json"):
        read_tvmaze(tmp_path)
    with pytest.raises(SourceError, match="no file given"):
        read_tvmaze(" , ")
