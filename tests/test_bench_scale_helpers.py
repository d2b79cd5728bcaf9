"""The pure helpers of the size benchmark under load (``bench.scale --load``, issue 21):
how a server is named on the command line, and how its figures are printed."""

from __future__ import annotations

from bench.processing import server_spec
from bench.scale import markdown_table
from bench.scale_load import wrk_row


def test_a_server_named_by_host_alone_is_the_local_root_on_3306():
    assert server_spec("127.0.0.1") == {"host": "127.0.0.1", "port": 3306, "user": "root"}


def test_a_server_named_by_host_and_port_is_reached_as_root():
    assert server_spec("127.0.0.1:3306") == {"host": "127.0.0.1", "port": 3306, "user": "root"}


def test_a_server_named_with_its_user_is_reached_as_that_user():
    assert server_spec("127.0.0.1:3399:bench") == {"host": "127.0.0.1", "port": 3399, "user": "bench"}


def test_the_figures_print_as_a_two_column_markdown_table():
    assert markdown_table([("a", "1 ms"), ("b", "2 ms")]) == (
        "| figure | value |\n| --- | --- |\n| a | 1 ms |\n| b | 2 ms |"
    )


def test_an_intake_phase_row_names_its_connections_and_gives_throughput_and_tail():
    figures = {"rps": 312.4, "p50": 40.04, "p99": 120.66, "socket_errors": "none"}
    assert wrk_row(16, 15, figures) == (
        "intake, 16 connections, 15 s: requests/s, p50 / p99",
        "312/s, 40.0 / 120.7 ms",
    )


def test_an_intake_phase_row_shows_socket_errors_when_there_were_some():
    figures = {"rps": 300.0, "p50": 40.0, "p99": 120.0, "socket_errors": "connect 0, read 2, write 0, timeout 0"}
    assert wrk_row(16, 15, figures)[1].endswith("(socket errors: connect 0, read 2, write 0, timeout 0)")
