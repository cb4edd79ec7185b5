from inference.decoding import TextAssembler


def feed_all(assembler, pieces):
    out = []
    for piece in pieces:
        text, _ = assembler.feed(piece)
        out.append(text)
    text, _ = assembler.flush()
    out.append(text)
    return "".join(out)


def test_plain_text_passes_through_immediately():
    a = TextAssembler()
    assert a.feed(b"Hello")[0] == "Hello"
    assert a.feed(b" world")[0] == " world"


def test_multibyte_character_split_across_tokens_is_not_garbled():
    euro = "€".encode()  # 3 bytes
    a = TextAssembler()
    assert a.feed(euro[:1])[0] == ""
    assert a.feed(euro[1:2])[0] == ""
    assert a.feed(euro[2:])[0] == "€"


def test_stop_string_cuts_output_and_is_not_emitted():
    a = TextAssembler(["END"])
    assert feed_all(a, [b"abc E", b"N", b"D more"]) == "abc "
    assert a.stopped


def test_partial_stop_prefix_is_held_then_released():
    a = TextAssembler(["END"])
    assert a.feed(b"abc E")[0] == "abc "
    assert a.feed(b"x")[0] == "Ex"
    assert not a.stopped


def test_held_text_is_flushed_at_the_end():
    a = TextAssembler(["END"])
    assert feed_all(a, [b"abc EN"]) == "abc EN"


def test_earliest_of_several_stops_wins():
    a = TextAssembler(["\n\n", "B"])
    assert feed_all(a, [b"xx", b"B\n\nyy"]) == "xx"


def test_attachments_are_released_with_the_text_that_completes_them():
    a = TextAssembler(["STOP"])
    assert a.feed(b"ok", 1) == ("ok", [1])
    assert a.feed(b" ST", 2) == (" ", [])  # "ST" held: token 2 not yet complete
    assert a.feed(b"AY", 3) == ("STAY", [2, 3])


def test_at_a_stop_string_the_tokens_that_added_nothing_before_it_lose_their_attachments():
    a = TextAssembler(["END"])
    assert a.feed(b"abc E", 1) == ("abc ", [])  # "E" held
    assert a.feed(b"N", 2) == ("", [])
    assert a.feed(b"D more", 3) == ("", [1])  # "abc " was token 1's: tokens 2 and 3 are the stop's
    assert a.stopped


def test_a_token_that_straddles_the_stop_keeps_its_attachment():
    a = TextAssembler(["\n\n"])
    assert a.feed(b"Hi", 1) == ("Hi", [1])
    assert a.feed(b" there\n", 2) == (" there", [])
    assert a.feed(b"\nmore", 3) == ("", [2])  # " there" is token 2's: token 3 only completed the stop


def test_a_split_character_keeps_its_tokens_attachments_until_it_completes():
    woman = "👩".encode()  # 4 bytes
    a = TextAssembler()
    assert a.feed(woman[:2], 1) == ("", [])
    assert a.feed(woman[2:3], 2) == ("", [])
    assert a.feed(woman[3:], 3) == ("👩", [1, 2, 3])


def test_generation_ending_inside_a_character_drops_it_and_its_tokens_attachments():
    woman = "👩".encode()
    a = TextAssembler()
    assert a.feed(b"Hi ", 1) == ("Hi ", [1])
    assert a.feed(woman[:2], 2) == ("", [])
    assert a.feed(woman[2:3], 3) == ("", [])
    assert a.flush() == ("", [])  # no U+FFFD, and no logprobs for bytes the text does not have
    assert not a.stopped


def test_a_token_that_straddles_the_end_inside_a_character_keeps_its_attachment():
    woman = "👩".encode()
    a = TextAssembler(["END"])
    assert a.feed(b"ok", 1) == ("ok", [1])
    assert a.feed(b" E" + woman[:1], 2) == (" ", [])  # "E" held (it may start "END"), then a first byte
    assert a.feed(woman[1:3], 3) == ("", [])
    assert a.flush() == ("E", [2])  # token 2 added "E"; token 3 added nothing


def test_a_stop_string_followed_by_the_first_bytes_of_a_character():
    a = TextAssembler(["END"])
    assert a.feed(b"abc END" + "👩".encode()[:2], 1) == ("abc ", [1])
    assert a.stopped and a.flush() == ("", [])
