"""What the spare learner does ahead for S3 (``s3.prepare``), and what a store's client keeps:
botocore's S3 model read once per process, listing timestamps left as text for the S3 client
only. No network: the clients are made for an address nothing listens on, and never called."""

from __future__ import annotations

import datetime

from botocore.config import Config

from trainui.storage import s3

LISTING = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>
<IsTruncated>false</IsTruncated>
<Contents><Key>a.bin</Key><LastModified>2024-05-01T10:00:00.000Z</LastModified>
<ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>3</Size></Contents>
</ListBucketResult>"""


def _client(session):
    return s3._create_client(
        session,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=Config(s3={"addressing_style": "path"}),
    )


def _parse(client, operation: str, body: bytes) -> dict:
    """``body`` parsed by ``client``'s own parser for ``operation``'s output."""
    model = client.meta.service_model.operation_model(operation)
    parser = client._endpoint._response_parser_factory.create_parser("rest-xml")
    response = {"status_code": 200, "headers": {}, "body": body}
    return parser.parse(response, model.output_shape)


def test_prepare_reads_the_model_once_for_every_later_session():
    s3.prepare()
    loader = s3._LOADER[0]
    assert loader.load_service_model("s3", "service-2") is loader.load_service_model(
        "s3", "service-2"
    )  # cached by the loader: read from disk once
    assert s3._session().get_component("data_loader") is loader
    assert s3._session("someone").get_component("data_loader") is loader


def test_the_s3_client_keeps_timestamps_as_text_and_the_session_keeps_its_parser():
    session = s3._session()
    default = session.get_component("response_parser_factory")
    client = _client(session)
    try:
        page = _parse(client, "ListObjectsV2", LISTING)
        assert page["Contents"][0]["Key"] == "a.bin"
        assert page["Contents"][0]["Size"] == 3
        assert page["Contents"][0]["LastModified"] == "2024-05-01T10:00:00.000Z"
        # other clients of the session (a role's STS, made by botocore) parse dates as ever
        assert session.get_component("response_parser_factory") is default
        other = session.create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="k",
            aws_secret_access_key="s",
        )
        parsed = _parse(other, "ListObjectsV2", LISTING)["Contents"][0]["LastModified"]
        assert isinstance(parsed, datetime.datetime)
        other.close()
    finally:
        client.close()
