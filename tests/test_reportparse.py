"""The report-text parser (``schemas/reportparse``) on real reports of every reporter in
use, on constructed variants (marked as such), and on arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.reportparse import FailedFile, ParsedReport, Prerequisite, parse_report_text
from schemas.reportparse.harness import count_numbers
from tests.report_texts import real_report, real_reports, whole_reports


def parse(name: str) -> ParsedReport:
    return parse_report_text(real_report(name))


def prereq(parsed: ParsedReport, phase: str, name: str) -> Prerequisite:
    return next(p for p in parsed.prerequisites if p.phase == phase and p.name == name)


# -- CPAN::Reporter ------------------------------------------------------------------------


def test_cpan_reporter_1_2020_prerequisites_by_phase():
    parsed = parse("collector/report-cpan-reporter-1.2020.txt")
    assert prereq(parsed, "runtime", "Bitcoin::BIP39") == Prerequisite("runtime", "Bitcoin::BIP39", "0.002", "0.003")
    assert prereq(parsed, "runtime", "CryptX").have == "0.087_007"
    assert prereq(parsed, "runtime", "perl") == Prerequisite("runtime", "perl", "5.014", "5.043010")
    assert prereq(parsed, "build", "Test2::V0") == Prerequisite("build", "Test2::V0", "0.000139", "1.302219")
    assert prereq(parsed, "configure", "ExtUtils::MakeMaker").have == "7.78"
    assert len(parsed.prerequisites) == 14


def test_cpan_reporter_1_2020_environment_special_variables_and_toolchain():
    parsed = parse("collector/report-cpan-reporter-1.2020.txt")
    assert parsed.user_agent == "CPAN::Reporter 1.2020"
    assert parsed.environment["AUTOMATED_TESTING"] == "1"
    assert parsed.environment["PERL5LIB"] == ""
    assert parsed.environment["PERL_USE_UNSAFE_INC"] == "1"
    assert parsed.perl_variables == {
        "$^X": "/home/sand/src/perl/repoperls/installed-perls/host/k93msid/v5.43.10/ac75/bin/perl",
        "$UID": "1005",
        "$EUID": "1005",
        "$GID": "1005 1005",
        "$EGID": "1005 1005",
    }
    assert parsed.toolchain["Test::More"] == "1.302219"
    assert len(parsed.toolchain) == 21


def test_cpan_reporter_1_2020_perl_configuration_one_field_per_line():
    parsed = parse("collector/report-cpan-reporter-1.2020.txt")
    assert parsed.config == {
        "osname": "linux",
        "osvers": "6.12.38+deb13-amd64",
        "archname": "x86_64-linux-thread-multi-ld",
        "useithreads": "define",
        "usemultiplicity": "define",
        "use64bitint": "define",
        "use64bitall": "define",
        "uselongdouble": "define",
        "cc": "cc",
        "gccversion": "14.3.0",
        "optimize": "-O2 -g",
        "commit_id": "068830eb0bb2c1a602e432b25a91dae1c2ba9239",
    }


def test_cpan_reporter_1_2020_test_summary_of_a_pass():
    parsed = parse("collector/report-cpan-reporter-1.2020.txt")
    assert (parsed.tests, parsed.failures, parsed.skipped, parsed.duration) == (715, 0, 5, 80.0)
    assert parsed.failed_files == []
    assert parsed.todo_pass is None


def test_cpan_reporter_1_2018_fail_names_the_failed_test_file_and_number():
    parsed = parse("capture/21-cpan-reporter-fail-register")
    assert parsed.user_agent == "CPAN::Reporter 1.2018"
    assert parsed.failed_files == [FailedFile("t/01-basic.t", "3")]
    assert (parsed.tests, parsed.failures) == (3, 1)
    assert prereq(parsed, "build", "ExtUtils::MakeMaker").have == "7.64"


def test_cpan_reporter_1_2010_failed_test_list_continues_on_the_next_line():
    parsed = parse("backend-generate/c9bb8cac-109c-11e3-9d5d-466d772db441")
    assert parsed.failed_files == [
        FailedFile("t/56writes.t", "45-46, 61-62, 65-66, 71, 83, 88, 184-185 259, 262-265, 269-276")
    ]
    assert count_numbers(parsed.failed_files[0].failed) == 24
    assert (parsed.tests, parsed.failures, parsed.skipped, parsed.duration) == (603, 24, 4, 898.0)


def test_cpan_reporter_whose_harness_died_still_names_the_failing_file():
    parsed = parse("backend-generate/4f976d00-08d2-11e3-bc0a-b75d6d822b3f")
    assert parsed.failed_files == [FailedFile("t/56writes.t", "")]
    assert parsed.failures == 180
    assert parsed.tests is None  # no "Files=, Tests=" line: the harness never finished


def test_cpan_reporter_1_2006_on_windows_keeps_paths_and_win32_diagnostics():
    parsed = parse("legacy/5ad79194-6cdc-1014-b4e3-38f2223f278b")
    assert parsed.user_agent == "CPAN::Reporter 1.2006"
    assert parsed.prerequisites == []  # "No requirements found"
    assert parsed.environment["COMSPEC"] == r"C:\Windows\system32\cmd.exe"
    assert (
        parsed.environment["PERL5OPT"]
        == r"-IC:\Users\Mithaldu\AppData\Local\Temp\CPAN-Reporter-lib-touY -MDevel::Autoflush"
    )
    assert parsed.perl_variables["$^X"] == r"C:\Perl16\bin\perl.exe"
    assert parsed.perl_variables["Win32::GetOSName"] == "Win7"
    assert parsed.toolchain["YAML"] == "n/a"
    assert parsed.config["osname"] == "MSWin32"
    assert parsed.config["cc"] == "C:/Perl16/site/bin/gcc.exe"
    assert parsed.config["gccversion"] == "3.4.5 (mingw-vista special r3)"
    assert parsed.tests is None  # NA at Makefile.PL: no tests ran


def test_cpan_reporter_1_17_from_the_mailing_list_era():
    parsed = parse("backend-mailer/4766403")
    assert parsed.user_agent == "CPAN::Reporter 1.1705"
    assert prereq(parsed, "runtime", "Test::More") == Prerequisite("runtime", "Test::More", "0.45", "0.89_01")
    assert parsed.failed_files == [FailedFile("t/10object.t", "8-9")]
    assert parsed.failures == 2
    assert parsed.config["uselongdouble"] == "undef"


def test_a_file_that_failed_without_failed_tests_is_listed_with_no_numbers():
    parsed = parse("backend-mailer/4766801")
    assert parsed.failed_files == [FailedFile("t/10objectus.t", ""), FailedFile("t/11objectuk.t", "")]
    assert parsed.failures == 0


def test_cpan_reporter_missing_module_is_na():
    parsed = parse("legacy/14849ff8-ff14-11e6-9865-4c569e5b62e3")
    assert prereq(parsed, "runtime", "Crypt::SSLeay").have == "n/a"


# -- App::cpanminus::reporter ----------------------------------------------------------------


def test_cpanminus_reporter_0_12_marks_missing_modules_na():
    parsed = parse("collector/report-cpanminus-reporter-0.12-with-report-prereqs.txt")
    assert parsed.user_agent == "App::cpanminus::reporter 0.12"
    assert prereq(parsed, "runtime", "Devel::StackTrace") == Prerequisite("runtime", "Devel::StackTrace", "1.32", "n/a")
    assert prereq(parsed, "runtime", "Carp") == Prerequisite("runtime", "Carp", "0", "1.26")


def test_cpanminus_reporter_0_12_special_variables_get_their_perl_names():
    parsed = parse("collector/report-cpanminus-reporter-0.12-with-report-prereqs.txt")
    assert parsed.perl_variables == {
        "$EGID": "1003 1003",
        "$EUID": "1003",
        "$^X": "/home/mojolicious/perl5/perlbrew/perls/perl-5.16.3/bin/perl",
        "$GID": "1003 1003",
        "$UID": "1003",
    }
    assert parsed.toolchain["Module::Signature"] == "n/a"


def test_report_prereqs_tap_block_adds_the_phases_the_reporter_did_not_list():
    parsed = parse("collector/report-cpanminus-reporter-0.12-with-report-prereqs.txt")
    assert prereq(parsed, "test", "Test::More") == Prerequisite("test", "Test::More", "0.96", "1.001014")
    assert prereq(parsed, "test", "base") == Prerequisite("test", "base", "0", "2.18")  # "any" is 0
    assert prereq(parsed, "test_recommends", "CPAN::Meta").have == "2.120630"
    # the reporter's own list wins where both list a module in a phase
    assert prereq(parsed, "configure", "ExtUtils::MakeMaker").have == "6.63_02"
    assert prereq(parsed, "runtime", "Moo").have == "n/a"


def test_cpanminus_reporter_0_18_no_requirements_found():
    assert parse("collector/prerequisites-cpanminus-reporter-0.18-not-found.txt").prerequisites == []


def test_section_excerpts_without_headings_are_read():
    prereqs = parse("collector/prerequisites-cpanminus-reporter-0.12-with-missing.txt")
    assert prereq(prereqs, "configure", "ExtUtils::MakeMaker").have == "6.63_02"
    environment = parse("collector/environment-cpan-reporter-1.2020.txt")
    assert environment.environment["LANG"] == "en_US.UTF-8"
    assert environment.perl_variables["$GID"] == "1005 1005"
    assert environment.toolchain["version"] == "0.9934"


# -- CPANPLUS --------------------------------------------------------------------------------


def test_cpanplus_0_9113_reads_have_want_columns_without_dashed_markers():
    parsed = parse("collector/report-cpanplus-0.9113.txt")
    assert parsed.user_agent == "CPANPLUS 0.9113"
    assert prereq(parsed, "requires", "Test::Flatten") == Prerequisite("requires", "Test::Flatten", "0.06", "0.07")
    assert prereq(parsed, "requires", "ExtUtils::MakeMaker") == Prerequisite(
        "requires", "ExtUtils::MakeMaker", "6.62", "6.62"
    )
    assert (parsed.tests, parsed.failures, parsed.duration) == (56, 0, 3.0)


def test_cpanplus_lists_toolchain_versions_inside_its_prerequisites_section():
    parsed = parse("collector/report-cpanplus-0.9113.txt")
    assert parsed.toolchain["CPANPLUS"] == "0.9113"
    assert parsed.toolchain["Test::More"] == "0.98"
    assert all(p.name != "CPANPLUS" for p in parsed.prerequisites)


def test_cpanplus_special_variables_and_comma_separated_perl_configuration():
    parsed = parse("collector/report-cpanplus-0.9113.txt")
    assert parsed.perl_variables == {
        "$^X": "/home/cpan/pit/rel/perl-5.12.1/bin/perl",
        "$UID": "1001",
        "$EUID": "1001",
        "$GID": "1001 1001",
        "$EGID": "1001 1001",
    }
    assert parsed.config["osname"] == "openbsd"
    assert parsed.config["osvers"] == "5.0"
    assert parsed.config["archname"] == "OpenBSD.i386-openbsd-thread-multi-64int"
    assert parsed.config["use64bitall"] == "undef"
    assert parsed.config["gccversion"] == "4.2.1 20070719"


def test_cpanplus_missing_module_shown_as_version_0_and_marked_is_na():
    parsed = parse("collector/report-cpanplus-0.9116-with-skipped.txt")
    assert prereq(parsed, "requires", "CPS") == Prerequisite("requires", "CPS", "0", "n/a")
    assert prereq(parsed, "requires", "Exporter").have == "5.64_03"
    assert parsed.tests is None  # the tests were skipped


def test_cpanplus_0_9908_long_module_names_overflow_their_column():
    parsed = parse("collector/report-cpanplus-0.9908.txt")
    assert prereq(parsed, "requires", "MooseX::MethodAttributes::Role::AttrContainer::Inheritable") == Prerequisite(
        "requires", "MooseX::MethodAttributes::Role::AttrContainer::Inheritable", "0.24", "0.32"
    )
    assert len(parsed.prerequisites) == 61


def test_cpanplus_0_9908_todo_passes_and_skipped_files():
    parsed = parse("collector/report-cpanplus-0.9908.txt")
    assert (parsed.tests, parsed.failures, parsed.skipped) == (3706, 0, 11)
    assert (parsed.todo_pass, parsed.todo_fail) == (1, 0)
    assert parsed.failed_files == []  # a TODO pass is listed in the summary but did not fail


def test_cpanplus_0_9003_old_report_with_bad_plans():
    parsed = parse("legacy/4fe9f782-4594-11df-b067-2bba90befd91")
    assert parsed.user_agent == "CPANPLUS 0.9003"
    assert parsed.failed_files == [FailedFile("t/001.t", ""), FailedFile("t/002.t", "")]
    assert (parsed.tests, parsed.failures) == (0, 0)
    assert parsed.perl_variables["$GID"] == "1003 1003 1003"
    assert prereq(parsed, "requires", "Data::Dumper").have == "2.121_17"
    assert parsed.toolchain["CPANPLUS"] == "0.9003"
    # perl 5.8.9 separates some fields with blanks only
    assert parsed.config["useithreads"] == "undef"
    assert parsed.config["gccversion"] == "4.2.1 20070719  [FreeBSD]"


def test_cpanplus_0_9914_recent_report():
    parsed = parse("legacy/69952598-c015-11ee-98b0-b3c3213a625c")
    assert parsed.user_agent == "CPANPLUS 0.9914"
    assert parsed.prerequisites == [Prerequisite("requires", "ExtUtils::MakeMaker", "0", "7.70")]
    assert parsed.config["osname"] == "freebsd"


# -- every real report -------------------------------------------------------------------------


@pytest.mark.parametrize("report", whole_reports(), ids=lambda r: r.name)
def test_every_real_report_names_its_reporter_environment_and_configuration(report):
    parsed = parse_report_text(report.text)
    assert parsed.user_agent.split()[0] in ("CPAN::Reporter", "CPANPLUS", "App::cpanminus::reporter")
    assert parsed.environment
    assert parsed.perl_variables.get("$^X")
    assert parsed.toolchain
    assert set(parsed.config) >= {"osname", "osvers", "archname", "useithreads", "cc", "optimize"}
    assert report.text[parsed.build_offset :].startswith("Summary of my perl5")


def test_the_build_is_the_perl_v_summary_at_the_end():
    text = real_report("collector/report-cpanplus-0.9113.txt")
    parsed = parse_report_text(text)
    assert text[parsed.build_offset :].rstrip().endswith("/home/cpan/pit/rel/perl-5.12.1/lib/5.12.1\n    .")


# -- constructed variants (not real reports) ---------------------------------------------------


def test_constructed_crlf_copy_of_a_real_windows_report_parses_the_same():
    text = real_report("legacy/5ad79194-6cdc-1014-b4e3-38f2223f278b")
    lf, crlf = parse_report_text(text), parse_report_text(text.replace("\n", "\r\n"))
    assert crlf.environment == lf.environment
    assert crlf.perl_variables == lf.perl_variables
    assert crlf.toolchain == lf.toolchain
    assert crlf.config == lf.config
    assert crlf.user_agent == lf.user_agent


CONSTRUCTED_REPORT_PREREQS = """\
t/00-report-prereqs.t .. #
# Versions for all modules listed in static metadata (including optional ones):
#
# === Runtime Requires ===
#
#     Module        Want                Have
#     ------------- ------------------- -------
#     Foo::Bar      >= 1.05, < 2        1.04
#     Baz           any                 missing
#
# === Other Modules ===
#
#     Module      Have
#     ----------- ----
#     JSON::PP    4.16
#
t/00-report-prereqs.t .. ok
"""


def test_constructed_report_prereqs_with_a_version_range_and_a_missing_module():
    parsed = parse_report_text(CONSTRUCTED_REPORT_PREREQS)
    assert parsed.prerequisites == [  # listed by phase, then name
        Prerequisite("runtime", "Baz", "0", "n/a"),
        Prerequisite("runtime", "Foo::Bar", ">= 1.05, < 2", "1.04"),
    ]


CONSTRUCTED_HARNESS_2 = """\
t/01_load.........ok
t/02_pod..........skipped
        all skipped: Test::Pod 1.00 required
t/03_basic........FAILED tests 3, 7
        Failed 2/10 tests, 80.00% okay
Failed Test  Stat Wstat Total Fail  Failed  List of Failed
-------------------------------------------------------------------------------
t/03_basic.t    2   512    10    2  20.00%  3 7
1 test skipped.
Failed 1/3 test scripts, 66.67% okay. 2/21 subtests failed, 90.48% okay.
"""


def test_constructed_test_harness_2_failure_table():
    parsed = parse_report_text(CONSTRUCTED_HARNESS_2)
    assert parsed.failed_files == [FailedFile("t/03_basic.t", "3 7")]
    assert parsed.failures == 2
    assert parsed.skipped == 1


def test_constructed_summary_printed_by_a_test_counts_only_if_last():
    text = "Test Summary Report\n-------------------\nt/a.t (Wstat: 256 Tests: 1 Failed: 1)\n  Failed test:  1\n"
    text += "Files=1, Tests=1,  0 wallclock secs\nAll tests successful.\nFiles=3, Tests=9,  2 wallclock secs\n"
    parsed = parse_report_text(text)
    assert parsed.tests == 9


def test_count_numbers_counts_ranges_whole():
    assert count_numbers("45-46, 61-62, 71 259, 262-265") == 10
    assert count_numbers("") == 0


# -- arbitrary text ----------------------------------------------------------------------------

LINES = st.sampled_from(
    [
        "",
        "------------------------------",
        "PREREQUISITES",
        "PREREQUISITES:",
        "Prerequisite modules loaded:",
        "requires:",
        "    Module Need Have",
        "    ------ ---- ----",
        "  ! Foo::Bar 1.0 n/a",
        "\t  Module Name   Have  Want",
        "Environment variables:",
        "    PATH = C:\\x;y",
        "Perl special variables (and OS-specific diagnostics, for MSWin32):",
        "    $UID/$EUID = 1 / 1",
        "Perl module toolchain versions installed:",
        "Test Summary Report",
        "-------------------",
        "t/a.t (Wstat: 256 Tests: 3 Failed: 1)",
        "  Failed tests:  1-2, 5",
        "  TODO passed:   3",
        "Files=1, Tests=3,  0 wallclock secs",
        "Failed 1/1 test programs. 1/3 subtests failed.",
        "# === Runtime Requires ===",
        "#     Module Want Have",
        "Summary of my perl5 (revision 5 version 36 subversion 0) configuration:",
        "    osname=linux, osvers=5.0, archname='x",
        "Failed Test  Stat Wstat Total Fail  Failed  List of Failed",
        "t/x.t ..... skipped: no",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_parser_never_raises_on_arbitrary_text(text):
    parse_report_text(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(LINES, st.text(max_size=40)), max_size=60), st.sampled_from(["\n", "\r\n", "\r"]))
def test_parser_never_raises_on_report_shaped_text(lines, newline):
    parse_report_text(newline.join(lines))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_parser_never_raises_on_cut_or_spliced_real_reports(data):
    texts = [r.text for r in real_reports() if len(r.text) < 40_000]
    text = data.draw(st.sampled_from(texts))
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    insert = data.draw(st.text(max_size=200))
    parse_report_text(text[:start] + insert + text[end:])


def test_non_text_input_gives_an_empty_result():
    assert parse_report_text(None) == ParsedReport()  # type: ignore[arg-type]
    assert parse_report_text("") == ParsedReport()


@pytest.mark.parametrize(
    "line",
    [
        " " * 2_000_000,
        "." * 2_000_000,
        "t/x" + "." * 2_000_000 + "x",
        "a" + " " * 2_000_000 + "(Wstat",
        "(Wstat: " * 250_000,
        "osname='" * 250_000,
        "Summary of my perl5 " * 100_000,
        "created by CPAN-Reporter-1" + "." * 2_000_000,
        "    K = " + "=" * 2_000_000,
        "!" * 2_000_000,
        "# === " * 300_000,
    ],
    ids=lambda line: repr(line[:12]),
)
@pytest.mark.timeout(20)  # the deadline: a regex that backtracks on such a line takes minutes
def test_adversarial_2_mb_lines_parse_without_catastrophic_backtracking(line):
    for text in (line, "Summary of my perl5\n" + line, "Test Summary Report\n-------------------\n" + line):
        assert isinstance(parse_report_text(text), ParsedReport)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_environment_values_are_located_in_the_text(newline):
    text = real_report("legacy/5ad79194-6cdc-1014-b4e3-38f2223f278b").replace("\n", newline)
    parsed = parse_report_text(text)
    assert parsed.environment_spans.keys() == parsed.environment.keys()
    for name, (start, end) in parsed.environment_spans.items():
        assert text[start:end] == parsed.environment[name]


def test_a_progress_line_overwritten_with_a_carriage_return_reads_as_the_terminal_showed():
    text = "t/a.t .. 1/3\rt/a.t .. ok\nt/b.t .. skipped: no\nFiles=2, Tests=3,  1 wallclock secs\nResult: PASS\n"
    parsed = parse_report_text(text)
    assert (parsed.tests, parsed.skipped) == (3, 1)


def test_a_text_of_lone_carriage_returns_is_read_line_by_line():
    text = real_report("collector/report-cpan-reporter-1.2020.txt").replace("\n", "\r")
    assert parse_report_text(text).environment["LANG"] == "en_US.UTF-8"


def test_the_readme_coverage_table_is_what_the_parser_reads_from_the_real_reports():
    import re
    from pathlib import Path

    from tests.report_texts import coverage_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = re.search(r"<!-- report-coverage -->\n(.*)\n<!-- /report-coverage -->", readme, re.S).group(1)
    assert table == coverage_table(), "run python -m tests.report_texts"
