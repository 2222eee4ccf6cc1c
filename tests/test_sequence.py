"""Stop rules of `Sequence`: detection and the cut of `text()` read the same decoded text."""

from seedtree.decoding.params import SamplingParams
from seedtree.decoding.sequence import Sequence
from seedtree.models.tiny import char_tokenizer

PAD = 0  # a special token of the character tokenizer


def sequence(stop: tuple[str, ...]) -> tuple[Sequence, dict[str, int]]:
    tok = char_tokenizer()
    params = SamplingParams(max_new_tokens=200, stop=stop, ignore_eos=True)
    return Sequence([], params, tok, eos_token_ids=(1,), max_context=512), tok.get_vocab()


def test_stop_string_split_by_a_special_token_ends_the_request_where_text_is_cut():
    seq, vocab = sequence(("ab",))
    a, b, c = vocab["a"], vocab["b"], vocab["c"]
    appended = seq.commit([c, a, PAD, b, c, c])
    assert seq.finish_reason == "stop" and appended == 4  # ends at the b that completes "ab"
    assert seq.text() == "c"


def test_stop_string_split_by_more_special_tokens_than_its_length():
    seq, vocab = sequence(("ab",))
    a, b = vocab["a"], vocab["b"]
    appended = seq.commit([a, *[PAD] * 20, b, a])
    assert seq.finish_reason == "stop" and appended == 22
    assert seq.text() == ""


def test_no_stop_string_means_the_whole_text():
    seq, vocab = sequence(("zz",))
    seq.commit([vocab["a"], PAD, vocab["b"]])
    assert not seq.finished and seq.text() == "ab"
