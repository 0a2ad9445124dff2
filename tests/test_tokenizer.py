from model.base.tokenizer import EOT_ID, VOCAB_SIZE, bpe_files_dir, gpt2_encoding


def test_known_tokens():
    enc = gpt2_encoding()
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [EOT_ID] == [50256]
    assert enc.n_vocab == VOCAB_SIZE == 50257
    assert enc.eot_token == 50256


def test_round_trip_unicode():
    enc = gpt2_encoding()
    text = "Café naïve 東京 — “quotes”\n\ttabs  and  spaces 🙂"
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_special_token_text_is_not_special_in_ordinary_encoding():
    # Documents that contain the literal string must not inject a document separator.
    assert EOT_ID not in gpt2_encoding().encode_ordinary("a <|endoftext|> b")


def test_files_come_from_the_package():
    folder = bpe_files_dir()
    assert (folder / "vocab.bpe").stat().st_size > 400_000
    assert (folder / "encoder.json").stat().st_size > 1_000_000
