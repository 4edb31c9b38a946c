"""`fraudstream ksql apply` and the prompt against the embedded server, with the project's ksql/*.sql end to end:
replayed payments come out of the preprocessed stream as Avro records keyed by payment id."""

from __future__ import annotations

import re
import uuid

import pytest
from click.testing import CliRunner
from ksqldb_server_helpers import labelled_payments, prefixed_statements, read_avro, running_server

from producers.replay import replay
from stack.ksqldb.apply import as_replace, ksql_group, normalise


def test_normalise_ignores_layout_and_create_prefix() -> None:
    a = "CREATE STREAM IF NOT EXISTS s WITH (KAFKA_TOPIC='t') AS SELECT *\n  FROM x EMIT CHANGES;"
    b = "CREATE OR REPLACE STREAM s WITH (KAFKA_TOPIC='t') AS SELECT * FROM x EMIT CHANGES"
    assert normalise(a) == normalise(b)
    assert normalise(a) != normalise(a.replace("*", "ID"))
    assert as_replace(a).startswith("CREATE OR REPLACE STREAM s WITH")


def test_apply_twice_then_payments_flow_through(stack, tmp_path) -> None:
    prefix = f"a{uuid.uuid4().hex[:8]}"
    statements = prefixed_statements(tmp_path / "ksql", prefix)
    with running_server(stack.addresses, tmp_path / "logs", service_id=f"{prefix}_") as server:
        runner = CliRunner()
        first = runner.invoke(ksql_group, ["--url", server.address, "apply", str(statements)])
        assert first.exit_code == 0, first.output
        files = sum(len(re.findall(r"^CREATE ", p.read_text(), re.MULTILINE)) for p in statements.glob("*.sql"))
        assert first.output.count("created") == files, first.output
        second = runner.invoke(ksql_group, ["--url", server.address, "apply", str(statements)])
        assert second.exit_code == 0, second.output
        assert second.output.count("unchanged") == files and "created" not in second.output, second.output

        payments = labelled_payments(300)
        summary = replay(
            payments,
            bootstrap_servers=stack.addresses.bootstrap_servers,
            topic=f"{prefix}_creditcardfraud_source",
            labels_topic=f"{prefix}_creditcardfraud_labels",
        )
        assert summary.ok and summary.labels_acknowledged == len(payments)  # to the labels topic
        by_id = {p.id: p for p in payments}
        records = read_avro(stack.addresses, f"{prefix}_creditcardfraud_preprocessed_avro", len(by_id))
        assert sorted(key for key, _ in records) == sorted(by_id)
        key, value = records[0]
        payment = by_id[key]
        assert value["AMOUNT"] == pytest.approx(payment.amount) and value["ID"] == payment.id
        assert value["V1"] == pytest.approx(payment.features[0])
        assert not {"USER", "PAYMENT_ID", "CLASS"} & set(value)  # the key travels as the Kafka key; no label

        # a changed CREATE ... AS SELECT is reported, not applied
        changed = statements / "040-enriched.sql"
        changed.write_text(changed.read_text().replace("'unknown'", "'nobody'"))
        third = runner.invoke(ksql_group, ["--url", server.address, "apply", str(statements)])
        assert third.exit_code == 0 and "changed" in third.output and "--replace" in third.output, third.output

        prompt = runner.invoke(
            ksql_group,
            ["--url", server.address],
            input="SHOW\n STREAMS;\nDESCRIBE nope;\nSET 'auto.offset.reset'='earliest';\n"
            f"SELECT PAYMENT_ID, AMOUNT FROM {prefix}_creditcardfraud_source EMIT CHANGES "
            "LIMIT 2;\nexit\n",
        )
        assert prompt.exit_code == 0, prompt.output
        assert f"{prefix}_CREDITCARDFRAUD_ANONYMISED".upper() in prompt.output
        assert "Could not find STREAM/TABLE 'NOPE'" in prompt.output
        after = prompt.output.split("PAYMENT_ID | AMOUNT")[1].strip().splitlines()
        assert after[0].startswith("Reading from the earliest offset")  # it says what it waits for
        rows = after[1:3]
        ids = {p.id: p for p in payments}
        assert len(rows) == 2 and all(row.split(" | ")[0] in ids for row in rows), prompt.output
        assert all(float(row.split(" | ")[1]) == pytest.approx(ids[row.split(" | ")[0]].amount) for row in rows)


def test_apply_reports_an_unreachable_server_in_one_line(tmp_path) -> None:
    result = CliRunner().invoke(ksql_group, ["--url", "http://127.0.0.1:9", "apply", str(tmp_path)])
    (tmp_path / "x.sql").write_text("SHOW STREAMS;")
    result = CliRunner().invoke(ksql_group, ["--url", "http://127.0.0.1:9", "apply", str(tmp_path)])
    assert result.exit_code == 1 and "cannot reach ksqlDB" in result.output
    assert "Traceback" not in result.output
