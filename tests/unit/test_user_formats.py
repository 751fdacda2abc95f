"""Import readers: records out of streams, and refusals by position that never stop the file."""

from __future__ import annotations

import io
import json

from identity.adapters import user_formats
from identity.adapters.user_formats import MAX_RECORD_BYTES
from identity.domain.imports import ImportedUser, Refusal


def _read(data: bytes, format: str) -> list[ImportedUser | Refusal]:
    stream = io.BufferedReader(io.BytesIO(data))
    return list(user_formats.read_file(stream, format))


def _shape(records: list[ImportedUser | Refusal]) -> list[tuple[int, str]]:
    return [
        (r.line, r.email.value if isinstance(r, ImportedUser) else "refused:" + r.reason)
        for r in records
    ]


def test_a_json_array_is_read_element_by_element_across_chunks() -> None:
    users = [{"email": f"u{i}@example.com", "name": "x" * 100} for i in range(2000)]
    records = _read(json.dumps(users, indent=1).encode(), "auth0")
    assert len(records) == 2000
    assert all(isinstance(r, ImportedUser) for r in records)
    assert records[-1].line == 2000


def test_a_broken_or_truncated_array_refuses_from_there_on() -> None:
    good = json.dumps({"email": "a@example.com"})
    records = _read(f'[{good}, {good.replace("a@", "b@")}, {{"email": "c@exa'.encode(), "auth0")
    assert _shape(records)[:2] == [(1, "a@example.com"), (2, "b@example.com")]
    assert records[2].line == 3 and isinstance(records[2], Refusal)
    # One object alone is an NDJSON file of one record.
    assert _read(b'{"not": "an identity"}', "kratos") == [Refusal(1, "the identity has no traits")]


def test_an_oversized_array_element_is_refused_without_reading_it_whole() -> None:
    huge = json.dumps({"email": "big@example.com", "name": "x" * (MAX_RECORD_BYTES + 10)})
    records = _read(f'[{huge}, {{"email": "after@example.com"}}]'.encode(), "auth0")
    assert isinstance(records[0], Refusal) and records[0].line == 1


def test_firebase_document_and_its_missing_hash_parameters() -> None:
    document = {
        "users": [
            {
                "localId": "1",
                "email": "f@example.com",
                "passwordHash": "aGFzaA==",
                "salt": "c2FsdA==",
            },
            {"localId": "2", "email": "g@example.com", "emailVerified": True, "disabled": True},
        ]
    }
    records = _read(json.dumps(document).encode(), "firebase")
    assert isinstance(records[0], Refusal) and "hash-config" in records[0].reason
    second = records[1]
    assert isinstance(second, ImportedUser) and second.verified and second.disabled


def test_ndjson_lines_are_refused_one_by_one() -> None:
    data = b"".join(
        [
            b'{"email": "ok@example.com"}\n',
            b"\n",  # blank lines are skipped, but counted
            b'{"email": 7}\n',
            b'["a list"]\n',
            b'{"email": "two@@example.com"}\n',
            b'{"email": "x@example.com", "email_verified": "yes"}\n',
            b'{"email": "y@example.com", "identities": [{"provider": "google"}]}\n',
            b'{"email": "z@example.com", "totp": {"secret": "not base32!"}}\n',
            b'{"email": "Caf\xc3\xa9@Exampl\xc3\xa9.com"}\n',
        ]
    )
    shape = _shape(_read(data, "identity"))
    assert shape[0] == (1, "ok@example.com")
    assert [line for line, what in shape if what.startswith("refused:")] == [3, 4, 5, 6, 7, 8]
    assert shape[-1] == (9, "Café@xn--exampl-gva.com")


def test_a_byte_order_mark_and_other_encodings() -> None:
    bom = b"\xef\xbb\xbf"
    assert _shape(_read(bom + b'{"email": "a@example.com"}\n', "identity")) == [
        (1, "a@example.com")
    ]
    assert _shape(_read(bom + b'[{"email": "b@example.com"}]', "auth0")) == [(1, "b@example.com")]
    utf16 = '{"email": "c@example.com"}\n'.encode("utf-16")
    refused = _read(utf16, "identity")
    assert refused and all(isinstance(r, Refusal) for r in refused)
    latin1 = '{"email": "d@example.com", "full_name": "Zoë"}\n'.encode("latin-1")
    assert _shape(_read(latin1 + b'{"email": "e@example.com"}\n', "identity")) == [
        (1, "refused:the record is not UTF-8"),
        (2, "e@example.com"),
    ]
