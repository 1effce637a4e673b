"""Gateway guardrails, pure parts: API keys, rate limiter, blocked terms and patterns."""

import pytest

from tuneline_workloads.gateway.guardrails import (ApiKeys, KeyFileError, Moderation, OutputFilter, RateLimiter,
                                                   bearer_token, parse_key_file)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_key_file_parsed_with_comments_and_blank_lines():
    keys = parse_key_file("# team a\nalice:sk-a\n\n bob : sk-b \n")
    assert keys == {"alice": b"sk-a", "bob": b"sk-b"}


@pytest.mark.parametrize("text, words, secret", [
    ("sk-no-colon-here\n", "line 1", "sk-no-colon"), ("a:sk-1\n:sk-nokeyid\n", "line 2", "sk-"),
    ("a:sk-1\na:sk-2\n", "twice", "sk-"), ("bad id:sk-3\n", "letters", "sk-")])
def test_key_file_errors_name_the_line_never_the_key(text, words, secret):
    with pytest.raises(KeyFileError) as err:
        parse_key_file(text)
    assert words in str(err.value)
    assert secret not in str(err.value)


def test_key_check_returns_the_key_id_only_for_an_exact_key(tmp_path):
    f = tmp_path / "keys"
    f.write_text("alice:sk-alice\nbob:sk-bob\n")
    keys = ApiKeys(f)
    assert keys.enabled
    assert keys.check("sk-bob") == "bob"
    assert keys.check("sk-alice") == "alice"
    for wrong in ("", None, "sk-bo", "sk-bobb", "SK-BOB", "alice", "alice:sk-alice"):
        assert keys.check(wrong) is None


def test_key_file_change_is_picked_up(tmp_path):
    clock = Clock()
    f = tmp_path / "keys"
    f.write_text("alice:sk-old\n")
    keys = ApiKeys(f, clock=clock, recheck_s=2)
    assert keys.check("sk-old") == "alice"
    f.write_text("alice:sk-new-and-longer\n")
    clock.t += 3
    assert keys.check("sk-old") is None
    assert keys.check("sk-new-and-longer") == "alice"
    # a broken update keeps the last good keys
    f.write_text("garbage without colon but longer still\n")
    clock.t += 3
    assert keys.check("sk-new-and-longer") == "alice"


def test_missing_key_file_is_an_error(tmp_path):
    with pytest.raises(KeyFileError):
        ApiKeys(tmp_path / "absent")


def test_no_key_file_means_auth_off():
    assert not ApiKeys().enabled


@pytest.mark.parametrize("auth, api_key, expected", [
    ("Bearer sk-1", None, "sk-1"), ("bearer  sk-1 ", None, "sk-1"), ("Basic abc", None, None),
    ("Bearer ", None, None), (None, "sk-2", "sk-2"), (None, None, None)])
def test_bearer_token(auth, api_key, expected):
    assert bearer_token(auth, api_key) == expected


def test_rate_limiter_allows_burst_then_refills_at_the_rate():
    clock = Clock()
    rl = RateLimiter(requests_per_minute=60, burst=3, clock=clock)
    assert [rl.acquire("k")[0] for _ in range(3)] == [True, True, True]
    allowed, wait = rl.acquire("k")
    assert not allowed and wait == pytest.approx(1.0)
    assert RateLimiter.retry_after_header(wait) == "1"
    clock.t += 0.5
    allowed, wait = rl.acquire("k")
    assert not allowed and wait == pytest.approx(0.5)
    clock.t += 0.5
    assert rl.acquire("k")[0]
    # never more than the burst, however long the pause
    clock.t += 3600
    assert [rl.acquire("k")[0] for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_keys_are_independent_and_bounded():
    clock = Clock()
    rl = RateLimiter(requests_per_minute=1, burst=1, clock=clock, max_keys=100)
    assert rl.acquire("a")[0] and not rl.acquire("a")[0]
    assert rl.acquire("b")[0]
    for i in range(500):
        rl.acquire(f"k{i}")
    assert len(rl._buckets) <= 100


def test_retry_after_is_a_whole_number_of_seconds_at_least_one():
    assert RateLimiter.retry_after_header(0.01) == "1"
    assert RateLimiter.retry_after_header(2.2) == "3"


def test_moderation_terms_are_case_insensitive_patterns_as_written():
    m = Moderation(["Password"], [r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"])
    assert m.check("my PASSWORD is") == "term"
    assert m.check("card 1234-5678-9012-3456 ok") == "pattern"
    assert m.check("nothing here") is None
    assert not Moderation().enabled and Moderation().check("anything") is None


def test_blocked_terms_look_through_accents_and_compatibility_forms_but_not_other_scripts_signs():
    m = Moderation(["kill", "Café"])
    for text in ("ki\u0301ll", "kíll", "KÏLL", "k\u0336i\u0336l\u0336l", "ｋｉｌｌ", "a cafe", "CAFÉ"):
        assert m.check(text) == "term", text
    assert m.check("skill set") == "term"              # terms are substrings (patterns are for words)
    assert m.check("kiln") is None
    # Devanagari vowel signs are letters of the word, not decoration: "कि" is not "क"
    assert Moderation(["क"]).check("कि") == "term" and Moderation(["कि"]).check("क") is None


def test_output_filter_holds_back_so_diacritic_padding_sends_none_of_a_term():
    filt = OutputFilter(Moderation(["secret"]))
    out, rest = _stream(filt, ["The", " s", "\u0301" * 12 + "e", "cret", " ok"])
    assert filt.blocked
    assert "s" not in ("".join(out) + rest).replace("The", "")


def _stream(filt, pieces):
    out = [filt.feed(p) for p in pieces]
    return out, filt.flush()


def test_output_filter_catches_a_term_split_over_chunks_before_sending_any_of_it():
    filt = OutputFilter(Moderation(["swordfish"]))
    out, rest = _stream(filt, ["The", " word", " is", " sword", "fish", " ok"])
    assert filt.blocked
    assert "sword" not in "".join(out) + rest
    assert "".join(out) in "The word is"


ZW = "\u200b"   # zero-width space: invisible, removed before terms are compared


def test_output_filter_holds_back_visible_characters_so_zero_width_padding_sends_none_of_a_term():
    filt = OutputFilter(Moderation(["secret"]))
    out, rest = _stream(filt, ["The", " s", ZW * 12 + "e", "cret", " ok"])
    assert filt.blocked
    sent = "".join(out) + rest
    assert "s" not in sent.replace("The", ""), sent


def test_output_filter_catches_a_term_whose_sent_part_was_padded_past_the_raw_hold_back():
    # the raw-character hold-back would send "s" + 12 zero-width characters and then check only the
    # last 5 raw characters before "ecret": the term got through, split and padded
    filt = OutputFilter(Moderation(["secret"]))
    out, rest = _stream(filt, ["s" + ZW * 12, ZW, ZW, ZW, ZW, ZW, ZW, "ecret"])
    assert filt.blocked
    assert "s" not in "".join(out) + rest


def test_output_filter_passes_clean_text_whole_and_in_order():
    pieces = ["You", " said", ":", " hello", " 1", " 2", " 3"]
    filt = OutputFilter(Moderation(["swordfish"]))
    out, rest = _stream(filt, pieces)
    assert not filt.blocked
    assert "".join(out) + rest == "".join(pieces)
    # chunks are forwarded whole, never split inside a token
    assert all(o == "" or "".join(pieces).find(o) >= 0 for o in out)
    assert set("".join(out).split(" ")) <= set("".join(pieces).split(" "))


def test_output_filter_without_moderation_sends_everything_at_once():
    filt = OutputFilter(Moderation())
    assert filt.feed("a") == "a" and filt.feed("b") == "b" and filt.flush() == ""


def test_output_filter_patterns():
    filt = OutputFilter(Moderation(patterns=[r"secret-\d+"]), window=16)
    out, rest = _stream(filt, ["id", " secret-", "42", " end"])
    assert filt.blocked and "secret" not in "".join(out) + rest


def test_output_filter_pattern_boundaries_see_the_text_before_the_checked_part():
    """The streaming check starts a few characters back; ``\\b`` there must not read the cut as a word
    boundary ("a skill set" is not "kill"), whichever way the text is chunked."""
    text = "a skill set, killer whales; then: kill"
    moderation = Moderation(patterns=[r"\bkill\b"])
    for size in range(1, 6):
        for offset in range(size):
            chunks = [text[:offset]] + [text[i:i + size] for i in range(offset, len(text), size)]
            filt = OutputFilter(moderation, window=4)
            out, rest = _stream(filt, [c for c in chunks if c])
            sent = "".join(out) + rest
            assert filt.blocked, (size, offset)
            assert sent.startswith("a skill set, killer whales") and "kill" not in sent[len("a skill set, killer whales"):]
    clean = OutputFilter(moderation, window=4)
    out, rest = _stream(clean, ["a", " ", "skil", "l s", "et"])
    assert not clean.blocked and "".join(out) + rest == "a skill set"
