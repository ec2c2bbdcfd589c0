#!/usr/bin/env python3
"""Golden tokenizer data for tests/test_tokenizer.cpp, produced by HF `tokenizers` (the reference).

Run with the reference env (has `tokenizers` and `transformers`):
    /opt/pyref/bin/python scripts/make_tokenizer_golden.py
Reads tests/data/tokenizer/deepseek-v4/{tokenizer.json,tokenizer_config.json} and writes
tests/data/tokenizer/golden.json:
  encode[]: {name, text, ids, decoded, decoded_skip_special, transformers_ids}
            ids = Tokenizer.encode(text, add_special_tokens=False).ids;
            transformers_ids = AutoTokenizer(text)["input_ids"] (shows whether BOS is added).
  decode[]: {name, ids, decoded, decoded_skip_special} for id sequences that split multi-byte
            characters or hold invalid UTF-8 (HF replaces invalid bytes by U+FFFD, Rust
            String::from_utf8_lossy: one U+FFFD per maximal invalid subsequence).
  small[]:  {text, ids, decoded} on tests/data/tokenizer/small/tokenizer.json, a ten-token file
            this script writes to exercise what DeepSeek's file does not use: ByteLevel's own
            regex and prefix space, a Removed String split, lstrip/rstrip, characters missing from
            the vocabulary.
"""
import json
import pathlib

from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOK_DIR = ROOT / "tests" / "data" / "tokenizer" / "deepseek-v4"
OUT = ROOT / "tests" / "data" / "tokenizer" / "golden.json"

PY_CODE = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b  # tuple swap
    return a

if __name__ == "__main__":
\tprint([fib(i) for i in range(10)])
'''

CPP_CODE = '''#include <vector>
template <typename T>
T sum(const std::vector<T>& v) {
  T s{};
  for (auto& x : v) s += x;   // trailing spaces   
  return s;
}
'''

TEXTS = [
    ("empty", ""),
    ("hello", "Hello, world!"),
    ("english", "The quick brown fox jumps over the lazy dog. I'm sure they'll say it's fine, "
                "isn't it? We've DONE it -- twice."),
    ("python_code", PY_CODE),
    ("cpp_code", CPP_CODE),
    ("json", '{"name": "dsv4", "layers": [1, 2, 3], "ok": true, "pi": 3.14159, "nested": {"a": null}}'),
    ("digits", "0 1 12 123 1234 12345 123456 1234567 3.14159 -42 1e-10 0x1F 2024-06-01 10:30:59"),
    ("long_number", "1234567890" * 12),
    ("unicode_numerals", "Ⅻ ² ٣٤٥ ０１２３ 七八九 ½"),
    ("chinese", "深度求索是一家人工智能公司。我们今天讨论分词器的实现，包括字节级BPE。"),
    ("japanese", "これは日本語のテキストです。カタカナもひらがなも漢字も混ざっています。"),
    ("korean", "안녕하세요, 세계! 토크나이저 테스트입니다."),
    ("emoji", "👍🏽 ok 👨‍👩‍👧‍👦 family 🇯🇵 flag ❤️ love 🤖🤖🤖"),
    ("mixed_scripts", "Привет мир, γειά σου κόσμε, مرحبا بالعالم, שלום עולם, नमस्ते दुनिया, "
                      "English和中文mixed在一起123abc"),
    ("combining_marks", "e\u0301 a\u0308 n\u0303o Z\u0351\u0352a\u0353l\u0354g\u0355o"),
    ("whitespace_leading", "   leading spaces"),
    ("whitespace_trailing", "trailing spaces   "),
    ("whitespace_tabs", "a\tb\t\tc\t \td"),
    ("whitespace_newlines", "line1\nline2\n\n\nline3\r\nline4\r\n\r\n"),
    ("whitespace_only", "   \n  \t \n"),
    ("single_space", " "),
    ("single_newline", "\n"),
    ("whitespace_run_long", "x" + " " * 300 + "y" + "\n" * 50 + "z"),
    ("unusual_spaces", "a\u00a0b\u3000全角\u2028c\u200bd\u0085\ne\u0085\u0085f\u000bg\u000ch"),
    ("punctuation_runs", "Wait!!! Really??? ... --- ==> (a)[b]{c} <tag/> #hash @at $5 %d ^_^ ~"),
    ("url_email", "See https://example.com/path/to?q=1&r=two#frag or mail user.name+tag@example.org."),
    ("special_tokens", "<｜begin▁of▁sentence｜><｜User｜>Hi there<｜Assistant｜><think>hmm, ok</think>"
                       "Hello!<｜end▁of▁sentence｜>"),
    ("special_tokens_glued", "abc<｜User｜>def<｜User｜><｜User｜>  <｜Assistant｜>\n\n<think>\n"),
    ("dsml", "Let me check.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
             "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
             "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>"),
    ("partial_special", "<｜User <｜User｜ ｜User｜> <|EOT|> <|EOT| <think >"),
    ("non_special_added", "<｜fim▁begin｜>def f():<｜fim▁hole｜>return 1<｜fim▁end｜><｜latest_reminder｜>x"),
    ("repeated_letters", "a" * 500),
    ("repeated_cjk", "中" * 200),
    ("byte_level_chars", "ĠĊ Ġhello Ċ âĢĻ"),
]
TEXTS.append(("long_mixed", "\n\n".join(t for _, t in TEXTS) * 3))


def byte_token_ids(tok: Tokenizer) -> dict:
    """Id of the single-byte token for each byte value (GPT-2 byte-to-unicode mapping)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: tok.token_to_id(chr(c)) for b, c in zip(bs, cs)}


SMALL_TOKENS = ["Ġ", "a", "b", "c", "Ġa", "ab", "Ġab", "<s>", "<x>", "-"]
SMALL_FILE = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [
        {"id": 7, "content": "<s>", "special": True, "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False},
        {"id": 8, "content": "<x>", "special": False, "single_word": False, "lstrip": True,
         "rstrip": True, "normalized": True},
    ],
    "normalizer": None,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "-"}, "behavior": "Removed", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    ]},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "ignore_merges": False, "vocab": {t: i for i, t in enumerate(SMALL_TOKENS)},
              "merges": [["Ġ", "a"], ["Ġa", "b"], ["a", "b"]]},
}
SMALL_CONFIG = {"bos_token": "<s>", "add_bos_token": True}
SMALL_TEXTS = ["ab-ab <x>  c", "ab-ab <x>  c <x>", " <x>x", "a--b", "abab cab", "<s>ab<s>", "", "-"]


def small_cases() -> list:
    small_dir = TOK_DIR.parent / "small"
    small_dir.mkdir(exist_ok=True)
    (small_dir / "tokenizer.json").write_text(json.dumps(SMALL_FILE, ensure_ascii=False, indent=1) + "\n",
                                              encoding="utf-8")
    (small_dir / "tokenizer_config.json").write_text(json.dumps(SMALL_CONFIG, indent=1) + "\n")
    tok = Tokenizer.from_file(str(small_dir / "tokenizer.json"))
    cases = []
    for text in SMALL_TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return cases


def main() -> None:
    tok = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(TOK_DIR))
    byte_id = byte_token_ids(tok)

    encode = []
    for name, text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        encode.append({
            "name": name,
            "text": text,
            "ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            "transformers_ids": hf(text)["input_ids"],
        })

    def from_bytes(bs: bytes) -> list:
        return [byte_id[b] for b in bs]

    euro = "€".encode()          # 3 bytes
    smile = "😀".encode()        # 4 bytes
    decode_cases = [
        ("split_3byte_char", from_bytes(b"a") + from_bytes(euro) + from_bytes(b"b")),
        ("split_4byte_char", from_bytes(smile) + from_bytes(smile[:2]) + from_bytes(smile[2:])),
        ("truncated_at_end", from_bytes(b"x") + from_bytes(smile[:3])),
        ("truncated_then_ascii", from_bytes(euro[:2]) + from_bytes(b"ok")),
        ("lone_continuation", from_bytes(b"\x80\x80a\xbf")),
        ("invalid_lead_bytes", from_bytes(b"\xc0\x80\xc1\xbf\xf5\x80\xff\xfe")),
        ("surrogate_encoded", from_bytes(b"\xed\xa0\x80z")),
        ("overlong_3byte", from_bytes(b"\xe0\x80\xafq")),
        ("above_max", from_bytes(b"\xf4\x90\x80\x80r")),
        ("truncated_before_special", from_bytes(euro[:2]) + [tok.token_to_id("<｜User｜>")] +
         from_bytes(smile[:1])),
        ("specials_and_text", [0, tok.token_to_id("<｜User｜>")] +
         tok.encode("hi 你好", add_special_tokens=False).ids + [1]),
    ]
    decode = [{
        "name": name,
        "ids": ids,
        "decoded": tok.decode(ids, skip_special_tokens=False),
        "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
    } for name, ids in decode_cases]

    golden = {
        "tokenizer": "deepseek-v4",
        "tokenizers_version": __import__("tokenizers").__version__,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "encode": encode,
        "decode": decode,
        "small": small_cases(),
    }
    OUT.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(encode)} encode cases, {len(decode)} decode cases")


if __name__ == "__main__":
    main()
