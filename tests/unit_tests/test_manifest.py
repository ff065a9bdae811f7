"""The manifest validator: every rule of SPEC §2, each problem located at its line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from trainui.core.manifest import (
    REDACTED,
    parse_manifest,
    parse_manifest_bytes,
    read_manifest,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD = """\
model_definition:
  name: mnist
  description: a test
  author:
    name: Ada
    email: ada@example.com
  framework:
    name: tensorflow
    version: 1.2
  execution:
    command: python3 train.py --data ${DATA_DIR}/x
    resource: medium
training_data_reference:
  - connection:
      endpoint_url: http://127.0.0.1:9000
      aws_access_key_id: AKIA
      aws_secret_access_key: verysecret
    source:
      bucket: mnist-data
      type: s3
training_results_reference:
  connection:
    auth_url: http://127.0.0.1:8080/auth/v1.0
    user_name: test:tester
    password: hunter2
  target:
    bucket: mnist-results
    type: bluemix_objectstore
"""


def check(text: str, env=None):
    return parse_manifest(textwrap.dedent(text), "job.yaml", env)


def only_error(report):
    errors = report.errors
    assert len(errors) == 1, report.formatted()
    return errors[0]


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


# --- the good path ----------------------------------------------------------------------------


def test_a_complete_manifest_reads_into_typed_values():
    report = check(GOOD)
    assert report.ok and report.problems == []
    m = report.manifest
    assert (m.name, m.description, m.author_name, m.author_email) == (
        "mnist",
        "a test",
        "Ada",
        "ada@example.com",
    )
    assert (m.framework_name, m.framework_version) == ("tensorflow", "1.2")
    assert m.command == "python3 train.py --data ${DATA_DIR}/x"
    assert (m.resource, m.gpus) == ("medium", 2)
    assert (m.data.type, m.data.bucket, m.data.endpoint) == (
        "s3",
        "mnist-data",
        "http://127.0.0.1:9000",
    )
    assert m.data.connection["aws_secret_access_key"] == "verysecret"
    assert m.results.type == "bluemix_objectstore"
    assert m.results.describe() == {
        "type": "bluemix_objectstore",
        "bucket": "mnist-results",
        "endpoint": "http://127.0.0.1:8080/auth/v1.0",
    }


@pytest.mark.parametrize(
    "written, read",
    [("1.2", "1.2"), ("1.20", "1.20"), ("2", "2"), ("'1.2'", "1.2"), ("1.2-py3", "1.2-py3")],
)
def test_framework_version_is_text_exactly_as_written(written, read):
    report = check(replace("version: 1.2", f"version: {written}"))
    assert report.ok, report.formatted()
    assert report.manifest.framework_version == read


@pytest.mark.parametrize("name", ["seed-s3.yml", "seed-swift.yml"])
def test_the_seed_manifests_validate_unchanged_with_placeholder_warnings(name):
    report = read_manifest(EXAMPLES / name)
    assert report.ok
    assert report.warnings and all("placeholder" in p.message for p in report.warnings)
    first = report.warnings[0]
    assert (first.line, first.column) == (18, 19 if name == "seed-s3.yml" else 15)
    assert report.manifest.command.startswith("python3 convolutional_network.py --trainImagesFile")
    assert report.manifest.command.endswith(
        "--trainingIters 2000000"
    )  # the plain scalar spans lines


def test_the_demo_manifest_is_valid_without_warnings():
    report = read_manifest(EXAMPLES / "demo" / "manifest.yml")
    assert report.ok and report.problems == []
    assert report.manifest.data.type == "local"


def test_both_spellings_are_accepted():
    text = replace("training_data_reference:", "training_data:").replace(
        "training_results_reference:", "training_results:"
    )
    report = check(text)
    assert report.ok, report.formatted()
    assert report.manifest.results.bucket == "mnist-results"


def test_a_single_mapping_is_accepted_for_the_data_reference():
    text = GOOD.replace(
        """  - connection:
      endpoint_url: http://127.0.0.1:9000
      aws_access_key_id: AKIA
      aws_secret_access_key: verysecret
    source:
      bucket: mnist-data
      type: s3
""",
        """  connection:
    path: /srv/data
  source:
    bucket: mnist-data
    type: local
""",
    )
    report = check(text)
    assert report.ok, report.formatted()
    assert report.manifest.data.connection == {"path": "/srv/data"}


def test_yaml_anchors_and_merge_keys_work_for_shared_connections():
    text = """\
    model_definition:
      name: x
      framework: {name: tf, version: "1"}
      execution: {command: run, resource: small}
    training_data:
      connection: &conn
        endpoint_url: http://h:1
        aws_access_key_id: k
        aws_secret_access_key: s
      source: {bucket: data, type: s3}
    training_results:
      connection:
        <<: *conn
        region: eu
      target: {bucket: out, type: s3}
    """
    report = check(text)
    assert report.ok, report.formatted()
    assert report.manifest.results.connection["endpoint_url"] == "http://h:1"
    assert report.manifest.results.connection["region"] == "eu"


# --- each rule, with its location -------------------------------------------------------------


def test_the_spec_example_resource_error_is_located_at_the_value():
    problem = only_error(check(replace("resource: medium", "resource: xlarge")))
    assert problem.format("job.yaml") == (
        "job.yaml:12:15: model_definition.execution.resource: 'xlarge' is not one of "
        "small, medium, large; did you mean 'large'?"
    )


def test_a_name_over_256_characters_is_refused_with_its_length():
    # a 100,000-character name made every row of the tables that list it as wide
    assert check(replace("name: mnist", "name: " + "n" * 256)).ok
    problem = only_error(check(replace("name: mnist", "name: " + "n" * 100_000)))
    assert problem.format("job.yaml") == (
        "job.yaml:2:9: model_definition.name: is 100,000 characters long; at most 256"
    )


def test_unknown_keys_get_a_did_you_mean_hint():
    problem = only_error(check(replace("    command:", "    comand:")))
    assert (problem.line, problem.column) == (11, 5)
    assert problem.path == "model_definition.execution.comand"
    assert "unknown key 'comand'; did you mean 'command'?" in problem.message


def test_unknown_keys_without_a_close_match_list_what_is_allowed():
    report = check(replace("  name: mnist\n", "  name: mnist\n  zzz: 1\n"))
    problem = next(p for p in report.errors if "zzz" in p.message)
    assert "allowed here: name, description, author, framework, execution" in problem.message


def test_a_duplicate_key_is_an_error_pointing_at_both_places():
    problem = only_error(
        check(replace("    resource: medium\n", "    resource: medium\n    resource: large\n"))
    )
    assert (problem.line, problem.column) == (13, 5)
    assert problem.message.startswith("duplicate key 'resource' (first at line 12)")


def test_every_problem_is_reported_at_once():
    text = replace("resource: medium", "resource: huge").replace("name: mnist", "nme: mnist")
    text = text.replace("type: s3", "type: gcs")
    report = check(text)
    messages = "\n".join(report.formatted())
    assert len(report.errors) == 3, messages
    assert "'huge' is not one of" in messages
    # the misspelt key says what is missing: no second error for the missing 'name'
    assert "unknown key 'nme'; did you mean 'name'?" in messages
    assert "'gcs' is not one of s3, bluemix_objectstore, local" in messages
    assert report.manifest is None


def test_missing_sections_are_named_with_their_other_spelling():
    report = check("model_definition:\n  name: x\n")
    messages = "\n".join(report.formatted())
    assert (
        "job.yaml:1:1: training_data_reference: required but missing (also spelled 'training_data')"
        in messages
    )
    assert "model_definition.framework: required but missing" in messages
    assert "model_definition.execution: required but missing" in messages


def test_two_spellings_of_the_same_section_are_refused():
    text = GOOD + "training_data:\n  connection: {}\n  source: {bucket: b, type: local}\n"
    problem = only_error(check(text))
    assert "'training_data' and 'training_data_reference' are two spellings" in problem.message


@pytest.mark.parametrize("entries, found", [(0, "none"), (2, "2")])
def test_exactly_one_data_reference(entries, found):
    item = "  - connection: {}\n    source: {bucket: b, type: local}\n"
    body = (
        "training_data_reference: []\n"
        if entries == 0
        else "training_data_reference:\n" + item * entries
    )
    start = GOOD.index("training_data_reference:")
    end = GOOD.index("training_results_reference:")
    report = check(GOOD[:start] + body + GOOD[end:])
    problem = only_error(report)
    assert f"exactly one data reference is supported, found {found}" in problem.message


def test_connection_keys_depend_on_the_store_type():
    text = replace(
        "      endpoint_url: http://127.0.0.1:9000\n", "      auth_url: http://127.0.0.1:9000\n"
    )
    messages = "\n".join(check(text).formatted())
    assert "'auth_url' is a key of bluemix_objectstore connections; s3 connections take" in messages
    # every s3 key is optional (botocore's chain and AWS S3 without them), so nothing is missing
    assert "is required for s3 stores" not in messages


def test_s3_connections_take_botocores_keys_and_mask_the_session_token():
    text = replace(
        "      endpoint_url: http://127.0.0.1:9000\n",
        "      aws_session_token: FwoGZXIvYXdzEXAMPLE\n      profile: team\n"
        "      region: eu-west-1\n      addressing_style: virtual\n",
    )
    report = check(text)
    assert not [p for p in report.problems if p.severity == "error"], report.formatted()
    assert "FwoGZXIvYXdzEXAMPLE" not in report.redacted_text()
    assert "profile: team" in report.redacted_text()
    bad = check(
        replace("      endpoint_url: http://127.0.0.1:9000\n", "      addressing_style: dns\n")
    )
    assert "addressing_style" in "\n".join(bad.formatted())


def test_swift_requires_its_keys_and_allows_keystone_ones():
    text = replace(
        "    password: hunter2\n", "    domain_name: Default\n    project_id: abc\n    region: r1\n"
    )
    problem = only_error(check(text))
    assert problem.path == "training_results_reference.connection"
    assert "'password' is required for bluemix_objectstore stores" in problem.message


def test_an_endpoint_must_be_a_url_and_a_local_path_absolute():
    text = replace("http://127.0.0.1:9000", "127.0.0.1:9000")
    assert "'127.0.0.1:9000' is not an http:// or https:// URL" in only_error(check(text)).message
    local = """\
    model_definition:
      {name: x, framework: {name: a, version: b}, execution: {command: c, resource: small}}
    training_data: {connection: {path: data/here}, source: {bucket: d, type: local}}
    training_results: {connection: {}, target: {bucket: r, type: local}}
    """
    assert "'data/here' must be an absolute path" in only_error(check(local)).message


@pytest.mark.parametrize("bucket", ["../etc", "a/b", "..", "."])
def test_a_bucket_is_one_name(bucket):
    problem = only_error(check(replace("bucket: mnist-data", f"bucket: '{bucket}'")))
    assert problem.path == "training_data_reference[0].source.bucket"
    assert "a bucket name is one name" in problem.message


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "is empty; a value is required"),
        ("~", "is empty; a value is required"),
        ("yes", "expected text, found the boolean 'yes'; put it in quotes"),
        ("[a, b]", "expected text, found a list"),
        ("{a: b}", "expected text, found a mapping"),
    ],
)
def test_text_values_are_checked(value, message):
    problem = only_error(check(replace("  name: mnist", f"  name: {value}")))
    assert problem.path == "model_definition.name"
    assert message in problem.message


def test_placeholders_are_warnings_and_a_secret_placeholder_is_not_echoed():
    report = check(replace("password: hunter2", "password: <my-password>"))
    assert report.ok
    (warning,) = report.warnings
    assert warning.format("job.yaml") == (
        "job.yaml:25:15: training_results_reference.connection.password: warning: "
        "the value looks like a placeholder; put the real value here"
    )


# --- ${NAME} expansion and redaction ---------------------------------------------------------


def test_environment_references_expand_from_the_given_environment():
    text = replace("aws_secret_access_key: verysecret", "aws_secret_access_key: ${S3_SECRET}")
    text = text.replace("http://127.0.0.1:9000", "http://${S3_HOST}:9000")
    report = check(text, env={"S3_SECRET": "from-env", "S3_HOST": "10.0.0.1"})
    assert report.ok, report.formatted()
    assert report.manifest.data.connection["aws_secret_access_key"] == "from-env"
    assert report.manifest.data.connection["endpoint_url"] == "http://10.0.0.1:9000"
    # without an environment, references are kept as written
    assert check(text).manifest.data.connection["aws_secret_access_key"] == "${S3_SECRET}"


def test_an_unset_environment_variable_is_a_located_error():
    text = replace("aws_secret_access_key: verysecret", "aws_secret_access_key: ${NOT_SET_HERE}")
    problem = only_error(check(text, env={}))
    assert (problem.line, problem.column) == (17, 30)
    assert problem.message == "environment variable ${NOT_SET_HERE} is not set"


def test_the_redacted_copy_replaces_every_secret_and_keeps_the_rest():
    report = check(GOOD)
    redacted = report.redacted_text()
    assert "verysecret" not in redacted and "hunter2" not in redacted
    assert redacted.count(REDACTED) == 2
    assert "aws_access_key_id: AKIA" in redacted  # not a secret
    assert redacted.replace(f"'{REDACTED}'", "X").count("\n") == GOOD.count("\n")
    again = parse_manifest(redacted, "again.yml")
    assert again.ok and again.manifest.results.connection["password"] == REDACTED


def test_redaction_keeps_environment_references_and_multiline_and_anchored_secrets_go():
    text = replace("aws_secret_access_key: verysecret", "aws_secret_access_key: ${S3_SECRET}")
    text = text.replace("password: hunter2", 'password: &pw "multi\n      line secret"')
    redacted = check(text).redacted_text()
    assert "${S3_SECRET}" in redacted
    assert "multi" not in redacted and "line secret" not in redacted
    assert f"password: &pw '{REDACTED}'" in redacted


def test_redaction_of_a_broken_file_still_hides_secret_lines():
    text = GOOD + "  oops: [\n"
    report = check(text)
    assert not report.ok
    redacted = report.redacted_text()
    assert "verysecret" not in redacted and "hunter2" not in redacted


def test_problems_never_contain_secret_values():
    text = replace("password: hunter2", "password: yes")
    report = check(text.replace("aws_secret_access_key: verysecret", "aws_secret_access_key: [x]"))
    assert "yes" not in "\n".join(p.message for p in report.problems)


# --- hostile input ----------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_before_it_expands():
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    problem = only_error(parse_manifest("\n".join(lines) + "\n"))
    assert "expands to more than 10,000 values" in problem.message
    assert "billion laughs" in problem.message


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")])
def test_20000_deep_nesting_is_refused(opening, closing):
    problem = only_error(parse_manifest(opening * 20_000 + closing * 20_000))
    assert "nested deeper than 64 levels" in problem.message


def test_deep_block_nesting_is_refused():
    text = "".join(f"{' ' * i}k{i}:\n" for i in range(200))
    assert "nested deeper than 64 levels" in only_error(parse_manifest(text)).message


def test_a_50_mb_file_is_refused_by_size_without_reading_it_all(tmp_path):
    big = tmp_path / "big.yml"
    with big.open("wb") as f:
        f.truncate(50_000_000)
    problem = only_error(read_manifest(big))
    assert problem.message == "is 50.0 MB; a manifest may be at most 1 MiB"


def test_binary_garbage_is_refused_as_binary():
    problem = only_error(parse_manifest_bytes(b"\x7fELF\x02\x01\x01\x00\x00garbage\x00\xff"))
    assert "is a binary file" in problem.message


def test_invalid_utf8_is_located():
    problem = only_error(parse_manifest_bytes(b"model_definition:\n  name: caf\xe9\n"))
    assert (problem.line, problem.column) == (2, 12)
    assert "is not UTF-8 text (byte 0xe9)" in problem.message


def test_utf16_with_a_bom_and_utf8_with_a_bom_are_read():
    assert parse_manifest_bytes(GOOD.encode("utf-16")).ok
    assert parse_manifest_bytes(b"\xef\xbb\xbf" + GOOD.encode()).ok


def test_control_characters_are_refused():
    problem = only_error(parse_manifest("model_definition:\n  name: a\x07b\n"))
    assert "unacceptable character" in problem.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file_says_so(text):
    assert "is empty" in only_error(parse_manifest(text)).message


@pytest.mark.parametrize(
    "text, found",
    [("- a\n- b\n", "a list"), ("just text\n", "the text 'just text'"), ("42\n", "the text '42'")],
)
def test_a_non_mapping_document_says_what_it_is(text, found):
    problem = only_error(parse_manifest(text))
    assert problem.message == f"a manifest must be a YAML mapping, but this is {found}"


def test_tabs_in_indentation_are_located_with_a_sentence():
    problem = only_error(parse_manifest("model_definition:\n\tname: x\n"))
    assert (problem.line, problem.column) == (2, 1)
    assert problem.message == "a tab character; YAML indentation must use spaces"


def test_syntax_errors_are_located():
    problem = only_error(parse_manifest("model_definition:\n  name: x\n   bad: 1\n", "f.yml"))
    assert problem.format("f.yml").startswith("f.yml:3:7: YAML syntax error: mapping values")


def test_an_unclosed_brace_is_located_where_it_opens_not_where_the_parser_gave_up():
    problem = only_error(check(replace("    resource: medium", "    resource: {gpus: 2")))
    where, _, message = problem.format("job.yaml").partition(" YAML syntax error: ")
    assert where == "job.yaml:12:15:"  # the '{', not line 13 where the parser gave up
    assert message.endswith(
        "(while parsing a flow mapping that starts here; the parser gave up at 13:24)"
    )


def test_an_unclosed_quote_is_located_at_the_quote_not_at_the_end_of_the_file():
    problem = only_error(check(replace("    type: bluemix_objectstore", '    type: "swift')))
    where, _, message = problem.format("job.yaml").partition(" YAML syntax error: ")
    assert where == "job.yaml:28:11:"  # the '"', not the end of the file
    assert message == (
        "found unexpected end of stream (while scanning a quoted scalar that starts here; "
        "the parser gave up at the end of the file)"
    )


@pytest.mark.parametrize(
    ("text", "where", "bracket"),
    [
        ("model_definition: [", "f.yml:1:19:", "["),
        ("model_definition: [\n", "f.yml:1:19:", "["),
        ("model_definition: {\n\n", "f.yml:1:19:", "{"),
        ("model_definition:\n  name: [1,   # a comment\n", "f.yml:2:9:", "["),
        ("a:\n  b: [1, {c: [\n", "f.yml:2:14:", "["),  # the innermost one still open
    ],
    ids=["no-newline", "last-line", "blank-lines-after", "comment-after", "nested"],
)
def test_a_bracket_left_open_at_the_end_of_the_file_is_located_where_it_opens(text, where, bracket):
    """As an unclosed '{' mid-file is: the parser notices only at the end of the file, where
    it expected the bracket's first value."""
    problem = only_error(parse_manifest(text, "f.yml"))
    located, _, message = problem.format("f.yml").partition(" YAML syntax error: ")
    assert located == where, problem.format("f.yml")
    assert message.endswith(
        f"(the '{bracket}' that starts here is never closed; the parser gave up at the end "
        "of the file)"
    )


def test_a_bad_escape_stays_located_at_the_escape():
    problem = only_error(parse_manifest('model_definition:\n  name: "a\\qb"\n', "f.yml"))
    assert (problem.line, problem.column) == (2, 11)


def test_several_documents_are_refused():
    problem = only_error(parse_manifest(GOOD + "---\nmore: 1\n"))
    assert "more than one YAML document" in problem.message
    assert problem.line == GOOD.count("\n") + 1


def test_python_tags_are_never_constructed():
    problem = only_error(
        check(replace("  name: mnist", "  name: !!python/object/apply:os.system [echo hi]"))
    )
    assert "expected text" in problem.message


def test_complex_keys_are_refused():
    report = check(GOOD + "? [a, b]\n: c\n")
    problem = only_error(report)
    assert (problem.line, problem.column, problem.path) == (29, 3, "")
    assert "a key must be plain text" in problem.message


def test_missing_and_directory_paths_are_clear(tmp_path):
    assert only_error(read_manifest(tmp_path / "nope.yml")).message == "no such file"
    assert "is a directory" in only_error(read_manifest(tmp_path)).message


# --- what would fail at submit, said by validate (botocore's own rules) ----------------------


def test_an_s3_bucket_name_botocore_refuses_is_located_and_a_placeholder_only_warned():
    error = only_error(check(replace("bucket: mnist-data", "bucket: My data")))
    assert (error.line, error.column, error.path) == (
        19,
        15,
        "training_data_reference[0].source.bucket",
    )
    assert error.message.startswith("'My data' is not an S3 bucket name")
    report = check(replace("bucket: mnist-data", "bucket: <bucket>"))
    assert not report.errors
    assert any(p.path == "training_data_reference[0].source.bucket" for p in report.warnings)
    # a Swift container or a local folder is not held to S3's rule
    assert not check(replace("bucket: mnist-results", "bucket: My results")).errors


def test_an_s3_region_botocore_refuses_is_located():
    text = replace(
        "      aws_access_key_id: AKIA\n",
        "      aws_access_key_id: AKIA\n      region: not a region\n",
    )
    error = only_error(check(text))
    assert error.path == "training_data_reference[0].connection.region"
    assert error.message == "'not a region' is not a region name (like us-east-1 or eu-west-3)"
    assert not check(text.replace("not a region", "eu-west-3")).errors


def test_an_environment_variable_set_but_empty_is_an_error_where_it_is_used():
    text = replace("aws_secret_access_key: verysecret", "aws_secret_access_key: ${SECRET}")
    error = only_error(check(text, env={"SECRET": ""}))
    assert (error.line, error.path) == (
        17,
        "training_data_reference[0].connection.aws_secret_access_key",
    )
    assert error.message == "environment variable ${SECRET} is set but empty"
    assert not check(text, env={"SECRET": "s3cr3t"}).errors


def test_results_in_the_training_datas_bucket_are_warned_of():
    same = GOOD.split("training_results_reference:")[0] + textwrap.dedent(
        """\
        training_results_reference:
          connection:
            endpoint_url: http://127.0.0.1:9000
            aws_access_key_id: AKIA
            aws_secret_access_key: verysecret
          target:
            bucket: mnist-data
            type: s3
        """
    )
    report = check(same)
    assert not report.errors
    (warning,) = report.warnings
    assert warning.path == "training_results_reference.target.bucket"
    assert "is also the training data's bucket" in warning.message
    # another endpoint: another bucket
    assert not check(
        same.replace(
            "endpoint_url: http://127.0.0.1:9000\n    aws_access_key_id: AKIA\n    aws_",
            "endpoint_url: http://127.0.0.1:9001\n    aws_access_key_id: AKIA\n    aws_",
        )
    ).warnings
