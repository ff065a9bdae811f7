"""URLs as they may be shown (trainui.core.urls): user-info masked, wherever it is written."""

from __future__ import annotations

import pytest

from trainui.core.urls import has_userinfo, mask_urls, masked_url, without_userinfo


@pytest.mark.parametrize(
    ("url", "masked", "bare"),
    [
        ("http://user:pw@host:9000/x", "http://***@host:9000/x", "http://host:9000/x"),
        ("https://user@host", "https://***@host", "https://host"),
        ("http://u:p/w?#@host/auth/v1.0", "http://***@host/auth/v1.0", "http://host/auth/v1.0"),
        ("http://u:p@w@host", "http://***@host", "http://host"),  # an unencoded '@' too
        ("http://***@host", "http://***@host", "http://host"),
        ("http://host:9000", "http://host:9000", "http://host:9000"),
    ],
)
def test_a_urls_user_info_is_masked_or_removed(url: str, masked: str, bare: str) -> None:
    assert masked_url(url) == masked
    assert without_userinfo(url) == bare
    assert has_userinfo(url) == (url != bare)


def test_user_info_without_a_scheme_counts_too() -> None:
    assert has_userinfo("user:pw@host")
    assert not has_userinfo("host:9000")


def test_every_url_in_a_text_is_masked_and_nothing_else() -> None:
    text = (
        "cannot list S3 bucket 'b' at http://me:pw@s3:9000: refused; "
        "tried 'https://a:b/c@swift/auth' and ada@example.com"
    )
    assert mask_urls(text) == (
        "cannot list S3 bucket 'b' at http://***@s3:9000: refused; "
        "tried 'https://***@swift/auth' and ada@example.com"
    )
    assert mask_urls(mask_urls(text)) == mask_urls(text)
    assert mask_urls("endpoint_url: http://host:9000  # a@b") == (
        "endpoint_url: http://host:9000  # a@b"
    )


def test_a_text_of_many_url_starts_is_masked_in_one_pass() -> None:
    text = "a://" * 200_000 + "@host"
    assert mask_urls(text) == "a://***@host"
