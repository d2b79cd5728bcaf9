"""The report page shows what an author looks for first in a FAIL, above the report's
text: the run's summary, the failed test files, and the prerequisites with the unmet ones
marked; from the stored facts, or from the text parsed at once when none are stored yet."""

from __future__ import annotations

import re

from storage.report_facts import enrich_guids
from tests.report_texts import real_report
from tests.viewer_helpers import make_document, store_document

MISSING_PREREQS = "collector/report-cpanminus-reporter-0.12-with-report-prereqs.txt"
FAILED_FILES = "backend-generate/7af15cf4-0a80-11e3-ab4d-dce3f09adca3"


def stored_with_text(viewer_app, name: str, grade: str = "fail") -> str:
    doc = make_document(**{"result.output.uncategorized": real_report(name), "result.grade": grade})
    return store_document(viewer_app.extensions["cpantesters_writer"], doc)


def page(viewer, guid: str, query: str = "") -> str:
    response = viewer.get(f"/report/{guid}{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def prerequisite_rows(html: str, marked: str) -> set[tuple[str, str]]:
    """(phase, module) of the prerequisite rows with class ``marked``."""
    return set(re.findall(rf'<tr class="{marked}"><td>([^<]*)</td><td>([^<]+)</td>', html))


def test_the_page_marks_each_unmet_requirement(viewer_app, viewer):
    html = page(viewer, stored_with_text(viewer_app, MISSING_PREREQS))
    assert prerequisite_rows(html, "unmet") == {
        ("runtime", module) for module in ("Devel::StackTrace", "Module::Runtime", "Moo", "Moo::Role", "Sub::Quote")
    }
    assert "Prerequisites (5 not met)" in html


def test_met_requirements_and_recommendations_are_listed_unmarked(viewer_app, viewer):
    html = page(viewer, stored_with_text(viewer_app, MISSING_PREREQS))
    listed = prerequisite_rows(html, "")
    assert ("test", "Devel::StackTrace") in listed  # 2.00 installed, 1.32 needed
    assert ("test_recommends", "CPAN::Meta") in listed  # below the version, but only recommended


def test_the_page_lists_the_failed_test_files_and_the_counts(viewer_app, viewer):
    html = page(viewer, stored_with_text(viewer_app, FAILED_FILES))
    assert '<table id="failed-files">' in html
    assert "<td>t/30setdates.t</td>" in html
    assert "625 tests, 3 failed" in html


def test_the_summary_names_the_perl_and_the_platform(viewer_app, viewer):
    html = page(viewer, stored_with_text(viewer_app, FAILED_FILES))
    summary = html.split('<table id="summary">', 1)[1].split("</table>", 1)[0]
    assert "<th>Perl</th>" in summary and "<th>Platform</th>" in summary
    assert "OpenBSD" in summary


def test_stored_facts_show_the_same_page_as_the_text_parsed_at_once(viewer_app, viewer):
    guid = stored_with_text(viewer_app, MISSING_PREREQS)
    before = viewer.get(f"/report/{guid}")
    enrich_guids(viewer_app.extensions["cpantesters_writer"], [guid])
    after = viewer.get(f"/report/{guid}")
    assert after.get_data() == before.get_data()
    assert after.headers["ETag"] == before.headers["ETag"]


def test_the_raw_and_json_forms_are_unchanged_by_the_facts(viewer_app, viewer):
    guid = stored_with_text(viewer_app, MISSING_PREREQS)
    assert "prerequisites" not in page(viewer, guid, "?raw=1")
    assert "summary" not in page(viewer, guid, "?json=1")


def test_a_report_whose_text_has_no_tables_shows_none(viewer_app, viewer):
    doc = make_document(**{"result.output.uncategorized": "Nothing to see here.\n"})
    html = page(viewer, store_document(viewer_app.extensions["cpantesters_writer"], doc))
    assert '<table id="prerequisites">' not in html
    assert '<table id="failed-files">' not in html
