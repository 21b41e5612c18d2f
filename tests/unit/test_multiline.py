from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.model import STDERR, STDOUT, LogRecord
from shipper.pipeline.multiline import MultilineJoiner, MultilineSpec
from shipper.pipeline.stats import ProcessorStats

CID = "c" * 64
T0 = 1_714_564_800_000_000_000


def lines(*messages: str, stream: str = STDOUT, start: int = 0) -> list[LogRecord]:
    return [
        LogRecord(CID, T0 + (start + i) * 1000, stream, 0, m, size=len(m) + 1)
        for i, m in enumerate(messages)
    ]


def preset(name: str, max_lines: int = 500, max_bytes: int = 1 << 20) -> MultilineJoiner:
    spec = MultilineSpec(name, None, False, "after", max_lines, max_bytes, 1.0)
    return MultilineJoiner(spec, ProcessorStats())


def pattern(
    regex: str, negate: bool = False, match: str = "after", max_lines: int = 500
) -> MultilineJoiner:
    spec = MultilineSpec(
        None, re.compile(regex), negate, "after" if match == "after" else "before",
        max_lines, 1 << 20, 1.0,
    )  # fmt: skip
    return MultilineJoiner(spec, ProcessorStats())


def run(joiner: MultilineJoiner, records: list[LogRecord]) -> list[LogRecord]:
    return joiner.push(records, 0.0) + joiner.flush_all()


JAVA = [
    'Exception in thread "main" java.lang.IllegalStateException: order 42 not found',
    "\tat com.shop.orders.OrderService.get(OrderService.java:57)",
    "\tat com.shop.orders.OrderController.show(OrderController.java:31)",
    "\tat com.shop.Main.main(Main.java:12)",
    "Caused by: java.sql.SQLException: connection refused",
    "\tat org.postgresql.Driver.connect(Driver.java:285)",
    "\t... 3 more",
]
PYTHON = [
    "Traceback (most recent call last):",
    '  File "/app/main.py", line 10, in <module>',
    "    main()",
    '  File "/app/main.py", line 6, in main',
    '    raise ValueError("bad input: 42")',
    "ValueError: bad input: 42",
]
PYTHON_CHAINED = [
    "Traceback (most recent call last):",
    '  File "/app/x.py", line 2, in <module>',
    "    1 / 0",
    "ZeroDivisionError: division by zero",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    '  File "/app/x.py", line 4, in <module>',
    '    raise ValueError("bad")',
    "ValueError: bad",
]
GO = [
    "panic: runtime error: index out of range [5] with length 3",
    "",
    "goroutine 1 [running]:",
    "main.lookup(...)",
    "\t/app/main.go:12",
    "main.(*Server).handle(0xc000010000, {0x4b2e40, 0x5})",
    "\t/app/server.go:40 +0x1d",
    "main.main()",
    "\t/app/main.go:20 +0x25",
    "exit status 2",
]


def test_java_trace_is_one_event_with_first_line_identity() -> None:
    joiner = preset("java")
    records = lines("starting", *JAVA, "next request")
    out = run(joiner, records)
    assert [r.message for r in out] == ["starting", "\n".join(JAVA), "next request"]
    event = out[1]
    assert (event.container_id, event.timestamp_ns, event.stream, event.seq) == (
        CID, T0 + 1000, STDOUT, 0,
    )  # fmt: skip
    assert event.flags == ("multiline",)
    assert event.size == sum(len(m) + 1 for m in JAVA)
    assert out[0] is records[0] and out[2] is records[-1]  # single lines pass untouched
    assert joiner._stats.multiline_events == 1
    assert joiner._stats.multiline_lines == len(JAVA)


def test_two_java_traces_in_a_row_stay_apart() -> None:
    second = ["java.lang.NullPointerException", "\tat com.shop.Cart.total(Cart.java:9)"]
    out = run(preset("java"), lines(*JAVA, *second))
    assert [r.message for r in out] == ["\n".join(JAVA), "\n".join(second)]


def test_python_traceback_includes_the_exception_line() -> None:
    out = run(preset("python"), lines("INFO starting", *PYTHON, "INFO retrying"))
    assert [r.message for r in out] == ["INFO starting", "\n".join(PYTHON), "INFO retrying"]
    assert out[1].flags == ("multiline",)


def test_python_chained_traceback_is_one_event_and_two_in_a_row_split() -> None:
    out = run(preset("python"), lines(*PYTHON_CHAINED, *PYTHON, "done"))
    assert [r.message for r in out] == ["\n".join(PYTHON_CHAINED), "\n".join(PYTHON), "done"]


def test_go_panic_with_blank_line_and_frames() -> None:
    out = run(preset("go"), lines("listening on :8080", *GO, "restarting"))
    assert [r.message for r in out] == ["listening on :8080", "\n".join(GO), "restarting"]


def test_go_preset_leaves_other_output_alone() -> None:
    out = run(preset("go"), lines("a", "\tindented", "", "b()"))
    assert [r.message for r in out] == ["a", "\tindented", "", "b()"]


def test_streams_are_joined_separately_when_interleaved() -> None:
    other = [
        "java.lang.OutOfMemoryError: Java heap space",
        "\tat java.util.Arrays.copyOf(Arrays.java:3236)",
    ]
    out_lines = lines(*JAVA, "GET /health 200", stream=STDOUT)
    err_lines = lines("WARN low memory", *other, "WARN recovered", stream=STDERR, start=100)
    mixed = [r for pair in zip(out_lines, err_lines, strict=False) for r in pair]
    mixed += out_lines[len(err_lines) :]
    out = run(preset("java"), mixed)
    assert [r.message for r in out if r.stream == STDOUT] == ["\n".join(JAVA), "GET /health 200"]
    assert [r.message for r in out if r.stream == STDERR] == [
        "WARN low memory", "\n".join(other), "WARN recovered",
    ]  # fmt: skip


def test_flush_timeout_releases_the_last_event_and_oldest_pending() -> None:
    joiner = preset("java")
    records = lines(*JAVA)
    assert joiner.push(records, 10.0) == []
    assert joiner.oldest_pending() == (T0, 0)
    assert joiner.next_deadline() == 11.0
    assert joiner.flush_due(10.9) == []
    out = joiner.flush_due(11.0)
    assert [r.message for r in out] == ["\n".join(JAVA)]
    assert joiner.oldest_pending() is None and joiner.next_deadline() is None


def test_oldest_pending_is_the_earliest_of_both_streams() -> None:
    joiner = preset("java")
    joiner.push(lines("late", stream=STDOUT, start=5), 0.0)
    joiner.push(lines("early", stream=STDERR, start=2), 0.0)
    assert joiner.oldest_pending() == (T0 + 2000, 0)


def test_max_lines_cuts_and_flags_every_piece() -> None:
    joiner = preset("java", max_lines=3)
    out = run(joiner, lines(*JAVA))
    assert [r.message for r in out] == [
        "\n".join(JAVA[0:3]), "\n".join(JAVA[3:6]), JAVA[6],
    ]  # fmt: skip
    assert [r.flags for r in out] == [
        ("multiline", "multiline_split"),
        ("multiline", "multiline_split"),
        ("multiline_split",),
    ]
    assert [r.timestamp_ns for r in out] == [T0, T0 + 3000, T0 + 6000]
    assert joiner._stats.multiline_splits == 2


def test_max_bytes_cuts_before_the_line_that_would_exceed() -> None:
    first, cont = "E" * 10, "\t" + "x" * 9  # 10 bytes each, +1 for each joining newline
    joiner = MultilineJoiner(
        MultilineSpec("java", None, False, "after", 100, 21, 1.0), ProcessorStats()
    )
    out = run(joiner, lines(first, cont, cont, "next"))
    assert [r.message for r in out] == [f"{first}\n{cont}", cont, "next"]
    assert [r.flags for r in out] == [("multiline", "multiline_split"), ("multiline_split",), ()]


def test_pattern_negate_after_like_filebeat() -> None:
    # Lines not starting with "[" are appended to the previous line that does.
    joiner = pattern(r"^\[", negate=True)
    out = run(joiner, lines("[1] a", "b", "c", "[2] d", "[3] e", "f"))
    assert [r.message for r in out] == ["[1] a\nb\nc", "[2] d", "[3] e\nf"]


def test_pattern_before_prepends_to_the_next_non_matching_line() -> None:
    joiner = pattern(r"\\$", match="before")  # shell-style trailing backslash continuation
    out = run(joiner, lines("a \\", "b \\", "c", "d", "e \\"))
    assert [r.message for r in out] == ["a \\\nb \\\nc", "d", "e \\"]


def test_flags_of_joined_lines_are_merged_without_duplicates() -> None:
    records = lines("Exception: x", "\tat a", "\tat b")
    records[1] = records[1]._replace(flags=("invalid_utf8",))
    records[2] = records[2]._replace(flags=("invalid_utf8", "truncated"))
    out = run(preset("java"), records)
    assert out[0].flags == ("invalid_utf8", "truncated", "multiline")


messages = st.lists(
    st.sampled_from(
        ["x", "", "  indented", "\tat frame", "Caused by: y", "Traceback (most recent call last):",
         "ValueError: v", "panic: p", "goroutine 1 [running]:", "main.main()", "[a] b", "c \\"]
    )
    | st.text(st.characters(blacklist_characters="\n"), max_size=8),  # a line has no newline
    max_size=60,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    stdout=messages,
    stderr=messages,
    kind=st.sampled_from(["java", "python", "go", "after", "before", "negate"]),
    max_lines=st.integers(1, 6),
    max_bytes=st.integers(1, 40),
    flush_points=st.sets(st.integers(0, 120)),
)
def test_no_line_is_lost_or_invented(
    stdout: list[str],
    stderr: list[str],
    kind: str,
    max_lines: int,
    max_bytes: int,
    flush_points: set[int],
) -> None:
    if kind in ("java", "python", "go"):
        spec = MultilineSpec(kind, None, False, "after", max_lines, max_bytes, 1.0)
    else:
        spec = MultilineSpec(
            None, re.compile(r"^\s|\\$" if kind != "negate" else r"^\["), kind == "negate",
            "before" if kind == "before" else "after", max_lines, max_bytes, 1.0,
        )  # fmt: skip
    joiner = MultilineJoiner(spec, ProcessorStats())
    records = lines(*stdout, stream=STDOUT) + lines(*stderr, stream=STDERR, start=1000)
    records.sort(key=lambda r: r.timestamp_ns % 997)  # some interleaving of the two streams
    out: list[LogRecord] = []
    for index, record in enumerate(records):
        out += joiner.push([record], float(index))
        if index in flush_points:
            out += joiner.flush_due(float(index) + 1.0)
    out += joiner.flush_all()
    for stream, sent in ((STDOUT, stdout), (STDERR, stderr)):
        events = [r for r in out if r.stream == stream]
        rebuilt = [line for r in events for line in r.message.split("\n")]
        assert rebuilt == sent
        assert all(r.message.count("\n") < max_lines for r in events)
    assert joiner.oldest_pending() is None
