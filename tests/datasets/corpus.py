"""A corpus of broken and hostile dataset files, generated in memory at test time (nothing is committed)."""

from __future__ import annotations

import io
import json
import os
import random
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".txt")


@dataclass(frozen=True)
class HostileFile:
    case: str
    filename: str
    content: bytes
    task: str = ""


def jsonl(rows: list[object]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def chat(*turns: tuple[str | None, str | None]) -> dict[str, object]:
    messages = []
    for role, content in turns:
        message: dict[str, object] = {}
        if role is not None:
            message["role"] = role
        if content is not None:
            message["content"] = content
        messages.append(message)
    return {"messages": messages}


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde" + b"\x00" * 64
GOOD_CHAT = chat(("user", "hi"), ("assistant", "hello"))


def hostile_corpus(seed: int = 3) -> list[HostileFile]:
    rng = random.Random(seed)
    noise = bytes(rng.getrandbits(8) for _ in range(4096)) + b"\x00"
    good_classification = b"text,label\n" + b"".join(f"row {i},{'ab'[i % 2]}\n".encode() for i in range(10))
    files: list[HostileFile] = []
    add = files.append

    for extension in EXTENSIONS:
        add(HostileFile(f"random bytes as {extension}", f"noise{extension}", noise))
        add(HostileFile(f"empty {extension}", f"empty{extension}", b""))
    for extension in (".csv", ".jsonl", ".json", ".txt", ".tsv"):
        add(HostileFile(f"png named {extension}", f"picture{extension}", PNG))
    add(HostileFile("png named parquet", "picture.parquet", PNG))
    add(HostileFile("unsupported extension", "model.pkl", b"\x80\x04K\x01."))
    add(HostileFile("no extension, binary content", "README", b"\x7fELF\x02\x01\x01\x00\x00"))
    add(HostileFile("executable name", "run.sh", b"#!/bin/sh\nrm -rf /\n"))

    # CSV and TSV
    add(HostileFile("header only csv", "header.csv", b"text,label\n"))
    add(HostileFile("header only tsv", "header.tsv", b"text\tlabel\n"))
    add(HostileFile("only blank lines csv", "blank.csv", b"\n\n\n"))
    add(HostileFile("unclosed quote", "quote.csv", b'text,label\n"never closed\nb,c\nd\n'))
    add(HostileFile("ragged rows", "ragged.csv", b"text,label\na,x\nb,y,z\nc\n"))
    add(HostileFile("duplicate column names", "dup.csv", b"text,text\na,b\n"))
    add(HostileFile("columns differing in case", "case.csv", b"Text,text,label\na,b,c\n"))
    add(HostileFile("empty column name", "noname.csv", b"text,,label\na,b,c\n"))
    add(HostileFile("20,000 columns", "wide.csv", (",".join(f"c{i}" for i in range(20_000)) + "\n" + ",".join("1" * 20_000) + "\n").encode()))
    add(HostileFile("8 MB field", "huge-field.csv", b"text,label\n" + b"x" * (8 * 1024 * 1024) + b",a\nsmall,b\n"))
    add(HostileFile("one class only", "one-class.csv", b"text,label\na,spam\nb,spam\nc,spam\n"))
    add(HostileFile("empty labels", "empty-label.csv", b"text,label\na,x\nb,\nc,y\n"))
    add(HostileFile("whitespace labels", "space-label.csv", b"text,label\na,x\nb,   \nc,y\n"))
    add(HostileFile("empty text", "empty-text.csv", b"text,label\n,x\nb,y\n"))
    add(HostileFile("latin-1 csv", "latin1.csv", "text,label\ncaf\xe9,x\nna\xefve,y\n".encode("latin-1")))
    add(HostileFile("invalid utf-8 late in csv", "late.csv", good_classification + b"bad \xff\xfe,a\n"))
    add(HostileFile("no known columns", "columns.csv", b"foo,bar\n1,2\n"))
    add(HostileFile("instruction without output", "instr.csv", b"instruction,input\nsay hi,\n"))
    add(HostileFile("source without target", "s2s.csv", b"source,other\na,b\n"))
    add(HostileFile("tokens in csv", "tokens.csv", b'tokens,tags\n"[""a""]","[""O""]"\n'))
    add(HostileFile("classification declared sft", "declared.csv", good_classification, task="sft"))
    add(HostileFile("text declared token classification", "declared2.csv", b"text\nhello\nworld\n", task="token_classification"))
    add(HostileFile("unknown task", "unknown-task.csv", good_classification, task="world_domination"))
    add(HostileFile("empty instruction", "instr-empty.tsv", b"instruction\toutput\n\tanswer\nq\ta\n"))

    # JSONL
    broken_at = [{"text": f"row {i}"} for i in range(11)]
    add(HostileFile("jsonl broken at row 12", "broken.jsonl", jsonl(broken_at) + b'{"text": "row 12\n' + jsonl(broken_at[:2])))
    add(HostileFile("jsonl truncated last row", "truncated.jsonl", jsonl(broken_at) + b'{"text": "cut'))
    add(HostileFile("jsonl of arrays", "arrays.jsonl", b"[1, 2]\n[3, 4]\n"))
    add(HostileFile("jsonl of numbers", "numbers.jsonl", b"1\n2\n3\n"))
    add(HostileFile("jsonl type changes", "types.jsonl", jsonl([{"text": "a", "label": 1}, {"text": "b", "label": "x"}])))
    add(HostileFile("jsonl nested 100000 deep", "deep.jsonl", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"))
    add(HostileFile("jsonl nested 40 deep", "deep40.jsonl", b'{"text": "a", "x": ' + b"[" * 40 + b"]" * 40 + b"}\n"))
    add(HostileFile("jsonl blank lines only", "blank.jsonl", b"\n\n\n"))
    add(HostileFile("chat missing role", "no-role.jsonl", jsonl([GOOD_CHAT, chat((None, "hi"), ("assistant", "yo"))])))
    add(HostileFile("chat unknown role", "bad-role.jsonl", jsonl([GOOD_CHAT, chat(("bot", "hi"), ("assistant", "yo"))])))
    add(HostileFile("chat no assistant turn", "no-assistant.jsonl", jsonl([chat(("user", "hi"), ("user", "again"))])))
    add(HostileFile("chat ends with user", "ends-user.jsonl", jsonl([chat(("user", "a"), ("assistant", "b"), ("user", "c"))])))
    add(HostileFile("chat empty messages", "empty-messages.jsonl", jsonl([GOOD_CHAT, {"messages": []}])))
    add(HostileFile("chat messages is a string", "string-messages.jsonl", jsonl([{"messages": "hi"}])))
    add(HostileFile("chat messages null", "null-messages.jsonl", jsonl([GOOD_CHAT, {"messages": None}])))
    add(HostileFile("chat content not text", "content-list.jsonl", jsonl([{"messages": [{"role": "user", "content": [1, 2]}, {"role": "assistant", "content": [3]}]}])))
    add(HostileFile("chat empty assistant content", "empty-content.jsonl", jsonl([chat(("user", "a"), ("assistant", ""))])))
    add(HostileFile("tokens and tags of unequal length", "unequal.jsonl", jsonl([{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["a", "b", "c"], "tags": ["O"]}])))
    add(HostileFile("empty tokens", "empty-tokens.jsonl", jsonl([{"tokens": [], "tags": []}])))
    add(HostileFile("tags not a list", "tags-scalar.jsonl", jsonl([{"tokens": ["a"], "tags": "O"}])))
    add(HostileFile("seq2seq empty target", "s2s.jsonl", jsonl([{"source": "a", "target": "b"}, {"source": "c", "target": ""}])))
    add(HostileFile("text is an object", "text-object.jsonl", jsonl([{"text": {"a": 1}}])))
    add(HostileFile("row larger than a block", "giant-row.jsonl", jsonl([{"text": "x" * (17 * 1024 * 1024)}])))

    # JSON
    add(HostileFile("json object not list", "object.json", json.dumps({"data": [{"text": "a"}]}).encode()))
    add(HostileFile("json list of numbers", "numbers.json", b"[1, 2, 3]"))
    add(HostileFile("json empty list", "empty-list.json", b"[]"))
    add(HostileFile("json scalar", "scalar.json", b'"hello"'))
    add(HostileFile("json nested 100000 deep", "deep.json", b"[" * 100_000 + b"]" * 100_000))
    add(HostileFile("json syntax error", "syntax.json", b'[{"text": "a"},'))
    add(HostileFile("json mixed types", "mixed.json", json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": [1]}]).encode()))
    add(HostileFile("json one class", "one-class.json", json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 1}]).encode()))

    # Parquet
    good = parquet(pa.table({"text": ["a", "b"], "label": ["x", "y"]}))
    add(HostileFile("truncated parquet", "truncated.parquet", good[: len(good) // 2]))
    add(HostileFile("parquet with corrupt middle", "corrupt.parquet", good[:8] + os.urandom(len(good) - 16) + good[-8:]))
    add(HostileFile("parquet of the wrong schema", "schema.parquet", parquet(pa.table({"id": [1, 2], "score": [0.1, 0.2]}))))
    add(HostileFile("parquet text as integers list", "list.parquet", parquet(pa.table({"text": [[1, 2]], "label": ["x"]}))))
    add(HostileFile("parquet with zero rows", "zero.parquet", parquet(pa.table({"text": pa.array([], pa.string())}))))
    add(HostileFile("truncated parquet named csv", "parquet.csv", good[: len(good) // 2]))

    # Text
    add(HostileFile("text of whitespace only", "blank.txt", b"   \n\n \t \n"))
    add(HostileFile("text with invalid utf-8", "bad.txt", b"hello\nworld \xc3\x28\n"))
    add(HostileFile("utf-16 without bom", "utf16.txt", "hello world\n".encode("utf-16-le")))

    # Hostile file names on otherwise broken content
    for name in ("../../etc/passwd.csv", "..\\..\\boot.ini.csv", "/abs/path.jsonl", "a\x00b.csv", "<script>alert(1)</script>.csv", "x" * 300 + ".csv"):
        add(HostileFile(f"hostile name {name[:20]!r}", name, b"foo,bar\n1,2\n"))
    return files
