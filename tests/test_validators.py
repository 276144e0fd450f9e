from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from integrations.validators import (
    email_key,
    normalize_dicomweb_url,
    normalize_email,
    parse_email_list,
)

GOOD_URLS = [
    ("https://pacs.university.edu/dicomweb", "https://pacs.university.edu/dicomweb"),
    ("https://pacs.university.edu/dicomweb/", "https://pacs.university.edu/dicomweb"),
    (
        "  http://example.edu/pacs/dicomweb/qido  ",
        "http://example.edu/pacs/dicomweb/qido",
    ),
    (
        "HTTPS://PACS.Example.EDU:8443/dicom-web//",
        "https://pacs.example.edu:8443/dicom-web",
    ),
    ("http://10.0.0.5:8042/dicom-web", "http://10.0.0.5:8042/dicom-web"),
    ("http://[::1]:8042/dicom-web", "http://[::1]:8042/dicom-web"),
    ("https://pacs.example.edu", "https://pacs.example.edu"),
]

BAD_URLS = [
    ("ftp://pacs.example.edu/dicomweb", "http:// or https://"),
    ("pacs.example.edu/dicomweb", "http:// or https://"),
    ("/dicomweb", "http:// or https://"),
    ("https:///dicomweb", "no host"),
    ("https://user:secret@pacs.example.edu/dicomweb", "user name or password"),
    ("https://user@pacs.example.edu/dicomweb", "user name or password"),
    ("https://pacs.example.edu/dicomweb#studies", "fragment"),
    ("https://pacs.example.edu/dicom web", "a space (U+0020)"),
    ("https://pacs.example.edu/wado?requestType=WADO", "query"),
    ("https://pacs.example.edu:99999/dicomweb", "Port"),
    ("javascript:alert(1)", "http:// or https://"),
    ("", "Enter a URL"),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_URLS)
def test_good_urls_are_normalised(raw: str, expected: str) -> None:
    assert normalize_dicomweb_url(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), BAD_URLS)
def test_bad_urls_are_refused_with_a_message_naming_the_value(
    raw: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_dicomweb_url(raw)
    message = caught.value.messages[0]
    assert reason.lower() in message.lower()
    if raw:
        assert raw.strip() in message


GOOD_EMAILS = [
    ("jane.doe@university.edu", "jane.doe@university.edu"),
    ("  Jane.Doe@University.EDU ", "Jane.Doe@university.edu"),
    ("x+tag@sub.example.org", "x+tag@sub.example.org"),
    ("josé@bücher.example", "josé@bücher.example"),
]

BAD_EMAILS = [
    "not-an-email",
    "jane@",
    "@university.edu",
    "jane doe@university.edu",
    "jane@localhost",
    "a@b@c.edu",
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_EMAILS)
def test_good_emails_are_normalised(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", BAD_EMAILS)
def test_bad_emails_are_refused_naming_the_value(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_email(raw)
    assert raw in caught.value.messages[0]


def test_matching_key_ignores_case() -> None:
    assert email_key(normalize_email("Jane.Doe@University.edu")) == email_key(
        normalize_email("jane.doe@university.edu")
    )


def test_pasted_list_accepts_lines_commas_and_semicolons_and_folds_duplicates() -> None:
    parsed = parse_email_list(
        "a@example.org\nB@example.org, c@example.org;d@example.org\n\nA@EXAMPLE.ORG"
    )
    assert parsed.emails == [
        "a@example.org",
        "B@example.org",
        "c@example.org",
        "d@example.org",
    ]
    assert parsed.errors == []
    assert parsed.duplicates == 1


def test_pasted_list_reports_every_bad_entry_with_its_line() -> None:
    parsed = parse_email_list("good@example.org\nbad-one\nok@example.org, also bad\n")
    assert [(line, value) for line, value, _ in parsed.errors] == [
        (2, "bad-one"),
        (3, "also bad"),
    ]
    assert parsed.error_messages()[0].startswith("Line 2: “bad-one”")
