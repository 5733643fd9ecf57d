"""engine.sse against sseclient-py, the parser it replaced: the same events
from the same bytes however the bytes are cut into pieces, and the
WHATWG rules where sseclient-py has none (BOM, CR line ends, bad UTF-8)."""
import sseclient
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sse import EventSplitter


class Pieces:
    def __init__(self, pieces):
        self.pieces = pieces

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        pass


def reference(pieces):
    return [e.data for e in sseclient.SSEClient(Pieces(pieces)).events()]


def ours(pieces):
    splitter = EventSplitter()
    out = []
    for piece in pieces:
        out += splitter.feed(piece)
    return out + splitter.close()


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


value = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)
line = st.one_of(
    value.map(lambda v: "data: " + v), value.map(lambda v: "data:" + v), st.just("data"),
    value.map(lambda v: ": " + v), value.map(lambda v: "event: " + v), value.map(lambda v: "id:" + v),
    value.map(lambda v: "database: " + v),
)
event = st.lists(line, min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(event, max_size=6), ending=st.sampled_from(["\n", "\r\n"]),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_same_events_as_sseclient_however_the_bytes_are_cut(events, ending, cuts):
    data = "".join(ending.join(lines) + ending + ending for lines in events).encode("utf-8")
    expected = reference([data])
    assert ours([data]) == expected
    assert ours(cut(data, cuts)) == expected
    assert ours([data[i:i + 1] for i in range(len(data))]) == expected


def test_an_event_without_its_blank_line_at_the_end_still_counts():
    assert ours([b"data: 1\n\ndata: [DONE]\n"]) == reference([b"data: 1\n\ndata: [DONE]\n"]) == ["1", "[DONE]"]


def test_cr_line_ends_and_a_crlf_cut_in_two():
    assert ours([b"data: a\rdata: b\r\r"]) == ["a\nb"]
    assert ours([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]) == ["a", "b"]


def test_a_leading_bom_is_dropped_even_when_it_comes_in_pieces():
    assert ours([b"\xef", b"\xbb\xbfdata: x\n\n"]) == ["x"]
    assert ours([b"\xef\xbb\xbfdata: x\n\n"]) == ["x"]


def test_bytes_that_are_not_utf8_become_replacement_characters():
    assert ours([b"data: \xff\xfe\n\n"]) == ["\ufffd\ufffd"]


def test_an_event_is_given_by_the_piece_that_completes_it():
    splitter = EventSplitter()
    assert splitter.feed(b'data: {"a"') == []
    assert splitter.feed(b": 1}\n") == []
    assert splitter.feed(b"\n") == ['{"a": 1}']
