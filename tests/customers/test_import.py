"""Importing customer lists: CSV (UTF-8 with BOM, GBK) and XLSX, through the API and the CLI.

Every data row gets an outcome (imported, updated, unchanged, rejected with a reason);
a file that cannot be read at all gets a 4xx with a sentence and changes nothing.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import time
import uuid
import zipfile
from collections.abc import Iterator

import pytest
from openpyxl import Workbook
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from customers.importer import collector_paused, read_customer_file
from customers.models import Customer
from huifang.cli import app as cli_app
from huifang.db import Database
from huifang.errors import Invalid
from huifang.settings import get_settings
from tenancy import service as tenancy
from tenancy.models import Tenant

ZH_HEADER = ["姓名", "手机号", "地区", "城市", "标签", "备注"]
EN_HEADER = ["Name", "Phone", "Region", "City", "Tags", "Notes"]
OLE_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")


# --- building files the way offices produce them -------------------------------------------


def csv_file(
    rows: list[list[object]], *, encoding: str = "utf-8-sig", delimiter: str = ","
) -> bytes:
    """A CSV as Excel writes it: CRLF line ends; "utf-8-sig" puts the BOM in front."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_file(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rezip(data: bytes, member: str, change) -> bytes:  # type: ignore[no-untyped-def]
    """The workbook ``data`` with one member's content replaced by ``change(content)``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            target.writestr(info.filename, change(content) if info.filename == member else content)
    return out.getvalue()


def corrupt_deflate(data: bytes, member: str) -> bytes:
    """The workbook with the compressed bytes of one member overwritten (a bad download)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    assert info.compress_type == zipfile.ZIP_DEFLATED
    local_header = data[info.header_offset : info.header_offset + 30]
    name_length = int.from_bytes(local_header[26:28], "little")
    extra_length = int.from_bytes(local_header[28:30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    # 0xFF starts a deflate block of the reserved type 3: zlib refuses it.
    return data[:start] + b"\xff" * 16 + data[start + 16 :]


SMALL_XLSX = xlsx_file([["姓名", "手机号"]] + [[f"客户{i}", 13900000000 + i] for i in range(30)])


# --- talking to the API ----------------------------------------------------------------------


def upload(client, account, data: bytes, filename: str = "客户名单.csv"):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/customers/import",
        headers=account.headers,
        files={"file": (filename, data, "application/octet-stream")},
    )


def imported(client, account, data: bytes, filename: str = "客户名单.csv") -> dict:  # type: ignore[no-untyped-def]
    response = upload(client, account, data, filename)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def customers(client, account) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The account's customers by E.164 phone."""
    page = client.get("/v1/customers?limit=500", headers=account.headers).json()
    assert page["total"] <= 500
    return {c["phone"]: c for c in page["items"]}


def statuses(report: dict) -> list[tuple[int, str]]:
    return [(row["row"], row["status"]) for row in report["rows"]]


# --- encodings, headers, separators ----------------------------------------------------------


def test_utf8_csv_with_bom_and_chinese_headers(client, account):
    data = csv_file(
        [
            ZH_HEADER,
            ["王女士", "138 0013 8000", "上海", "浦东新区", "老客户、有宠物", "门禁 1203"],
            ["李先生", "+86 139-0013-9000", "浙江", "杭州", "", ""],
        ]
    )
    assert data.startswith(codecs.BOM_UTF8)

    report = imported(client, account, data)

    assert (report["imported"], report["updated"], report["unchanged"], report["rejected"]) == (
        2,
        0,
        0,
        0,
    )
    assert statuses(report) == [(2, "imported"), (3, "imported")]
    stored = customers(client, account)
    wang = stored["+8613800138000"]
    assert wang["name"] == "王女士"  # the BOM did not end up in the first header or value
    assert (wang["region"], wang["city"], wang["notes"]) == ("上海", "浦东新区", "门禁 1203")
    assert sorted(wang["tags"]) == sorted(["老客户", "有宠物"])
    assert report["rows"][0]["customer_id"] == wang["id"]
    li = stored["+8613900139000"]
    assert (li["name"], li["region"], li["city"], li["tags"], li["notes"]) == (
        "李先生",
        "浙江",
        "杭州",
        [],
        None,
    )


@pytest.mark.parametrize("encoding", ["gb18030", "gbk"])
def test_csv_saved_by_chinese_excel_in_gbk(client, account, encoding):
    data = csv_file(
        [
            ZH_HEADER,
            ["王女士", "13800138000", "广东", "深圳", "老客户，有宠物", "周末上午；带钥匙"],
        ],
        encoding=encoding,
    )
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # really not UTF-8: the importer has to recognise GBK

    report = imported(client, account, data)

    assert statuses(report) == [(2, "imported")]
    wang = customers(client, account)["+8613800138000"]
    assert (wang["name"], wang["region"], wang["city"], wang["notes"]) == (
        "王女士",
        "广东",
        "深圳",
        "周末上午；带钥匙",
    )
    assert sorted(wang["tags"]) == sorted(["老客户", "有宠物"])


def test_english_headers_and_every_tag_separator(client, account):
    separators = ["、", "，", ",", ";", "；", "|", "/", " ; "]
    rows: list[list[object]] = [EN_HEADER]
    rows += [
        [f"Client {i}", f"1390000{i:04d}", "", "", f"老客户{sep}有宠物", ""]
        for i, sep in enumerate(separators)
    ]

    report = imported(client, account, csv_file(rows))

    assert report["imported"] == len(separators), report
    stored = customers(client, account)
    for i, sep in enumerate(separators):
        assert sorted(stored[f"+861390000{i:04d}"]["tags"]) == sorted(["老客户", "有宠物"]), sep


@pytest.mark.parametrize("delimiter", [";", "\t"], ids=["semicolon", "tab"])
def test_semicolon_and_tab_separated_csv(client, account, delimiter):
    data = csv_file(
        [
            ZH_HEADER,
            # The other separators inside cells must not be taken for the column separator.
            ["王女士", "13800138000", "上海", "浦东新区", "老客户,有宠物", "门禁, 1203"],
            ["李先生", "13900139000", "浙江", "杭州", "VIP", "周末, 上午"],
        ],
        delimiter=delimiter,
    )

    report = imported(client, account, data)

    assert statuses(report) == [(2, "imported"), (3, "imported")]
    stored = customers(client, account)
    assert stored["+8613800138000"]["city"] == "浦东新区"
    assert stored["+8613800138000"]["notes"] == "门禁, 1203"
    assert sorted(stored["+8613800138000"]["tags"]) == sorted(["老客户", "有宠物"])
    assert stored["+8613900139000"]["notes"] == "周末, 上午"


def test_xlsx_with_phones_stored_as_numbers(client, account):
    data = xlsx_file(
        [
            ["姓名", "手机号", "城市", "标签"],
            ["王女士", 13800138000, "上海", "老客户、有宠物"],  # an int cell
            ["李先生", 13900139000.0, "杭州", None],  # a float cell, as Excel often keeps it
            [],  # an empty row is skipped
            ["陈女士", "137 0013 7000", None, "VIP"],  # a text cell
            [None, 13600136000, None, None],  # no name
        ]
    )

    report = imported(client, account, data, filename="客户名单.xlsx")

    assert statuses(report) == [(2, "imported"), (3, "imported"), (5, "imported"), (6, "rejected")]
    assert "name is empty" in report["rows"][3]["reason"]
    stored = customers(client, account)
    assert set(stored) == {"+8613800138000", "+8613900139000", "+8613700137000"}
    assert stored["+8613900139000"]["name"] == "李先生"
    assert sorted(stored["+8613800138000"]["tags"]) == sorted(["老客户", "有宠物"])
    assert stored["+8613700137000"]["city"] is None


# --- the per-row report ----------------------------------------------------------------------


def test_report_says_what_happened_to_every_row(client, account):
    data = csv_file(
        [
            ["姓名", "手机号"],
            ["王女士", "13800138000"],  # 2 imported
            ["前台", "010 6552 9988"],  # 3 a Beijing landline
            ["张三", "12345"],  # 4 not a number anyone can have
            ["", "13900139000"],  # 5 no name
            [],  # 6 blank: skipped, but still counted as a line
            ["王女士", "+86 138-0013-8000"],  # 7 line 2 again, spelled differently
            ["赵六", ""],  # 8 no phone
            ["李先生", "13700137000"],  # 9 imported
        ]
    )

    report = imported(client, account, data)

    assert statuses(report) == [
        (2, "imported"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "rejected"),
        (7, "rejected"),
        (8, "rejected"),
        (9, "imported"),
    ]
    assert (report["imported"], report["updated"], report["unchanged"], report["rejected"]) == (
        2,
        0,
        0,
        5,
    )
    reasons = {row["row"]: row["reason"] for row in report["rows"]}
    assert "fixed-line" in reasons[3]
    assert "not a valid phone number" in reasons[4]
    assert "name is empty" in reasons[5]
    assert "line 2" in reasons[7]
    assert "phone number is empty" in reasons[8]
    assert reasons[2] is None and reasons[9] is None
    rejected = [row for row in report["rows"] if row["status"] == "rejected"]
    assert all(row["customer_id"] is None for row in rejected)
    stored = customers(client, account)
    assert set(stored) == {"+8613800138000", "+8613700137000"}
    assert {row["customer_id"] for row in report["rows"] if row["customer_id"]} == {
        c["id"] for c in stored.values()
    }


def test_a_too_long_region_or_city_is_a_rejected_row_not_an_error(client, account):
    data = csv_file(
        [
            ZH_HEADER,
            ["王女士", "13800138000", "上海", "浦" * 51, "", ""],
            ["李先生", "13900139000", "长" * 51, "杭州", "", ""],
            ["陈女士", "13700137000", "上海", "浦东新区", "", ""],
        ]
    )

    report = imported(client, account, data)

    assert statuses(report) == [(2, "rejected"), (3, "rejected"), (4, "imported")]
    assert "50" in report["rows"][0]["reason"]
    assert set(customers(client, account)) == {"+8613700137000"}


def test_a_nul_byte_deep_in_a_csv_is_refused_not_a_server_error(client, account):
    rows: list[list[object]] = [["姓名", "手机号", "备注"]]
    rows += [[f"客户{i}", f"1390000{i:04d}", "周末上午方便，提前一天电话确认"] for i in range(200)]
    data = csv_file(rows) + "坏行,13700137000,x\x00y\r\n".encode()
    assert b"\x00" not in data[:4096]

    response = upload(client, account, data)

    assert response.status_code == 415, response.text[:500]
    assert "neither CSV text" in response.json()["detail"]
    assert customers(client, account) == {}


# --- idempotency -----------------------------------------------------------------------------


FIRST_LIST = [
    ZH_HEADER,
    ["王女士", "13800138000", "上海", "浦东新区", "老客户", "门禁 1203"],
    ["李先生", "13900139000", "浙江", "杭州", "VIP", ""],
    ["陈女士", "13700137000", "", "", "", ""],
]


def test_the_same_file_twice_changes_nothing_the_second_time(client, account):
    data = csv_file(FIRST_LIST)
    first = imported(client, account, data)
    before = customers(client, account)

    second = imported(client, account, data)

    assert statuses(second) == [(2, "unchanged"), (3, "unchanged"), (4, "unchanged")]
    assert (second["imported"], second["updated"], second["unchanged"]) == (0, 0, 3)
    assert [r["customer_id"] for r in second["rows"]] == [r["customer_id"] for r in first["rows"]]
    assert customers(client, account) == before  # updated_at included


def test_a_changed_file_updates_only_the_changed_rows(client, account):
    imported(client, account, csv_file(FIRST_LIST))
    before = customers(client, account)
    changed = [
        ZH_HEADER,
        ["王女士", "13800138000", "上海", "闵行区", "老客户", "门禁 1203"],  # moved
        ["李先生", "139 0013 9000", "浙江", "杭州", "VIP", ""],  # same, spelled apart
        ["陈女士", "13700137000", "", "", "", ""],  # same
        ["赵先生", "13600136000", "江苏", "南京", "", ""],  # new
    ]

    report = imported(client, account, csv_file(changed))

    assert statuses(report) == [(2, "updated"), (3, "unchanged"), (4, "unchanged"), (5, "imported")]
    after = customers(client, account)
    assert after["+8613800138000"]["city"] == "闵行区"
    assert after["+8613800138000"]["id"] == before["+8613800138000"]["id"]
    assert after["+8613800138000"]["updated_at"] != before["+8613800138000"]["updated_at"]
    assert after["+8613900139000"] == before["+8613900139000"]
    assert len(after) == 4


def test_an_update_never_blanks_fields_and_only_adds_tags(client, account):
    created = client.post(
        "/v1/customers",
        headers=account.headers,
        json={
            "name": "王女士",
            "phone": "13800138000",
            "region": "上海",
            "city": "浦东新区",
            "tags": ["老客户", "有宠物"],
            "notes": "门禁 1203",
        },
    )
    assert created.status_code == 201
    data = csv_file([ZH_HEADER, ["王女士", "13800138000", "", "", "VIP、老客户", ""]])

    report = imported(client, account, data)

    assert statuses(report) == [(2, "updated")]
    assert report["rows"][0]["customer_id"] == created.json()["id"]
    wang = customers(client, account)["+8613800138000"]
    assert (wang["region"], wang["city"], wang["notes"]) == ("上海", "浦东新区", "门禁 1203")
    assert sorted(wang["tags"]) == sorted(["老客户", "有宠物", "VIP"])
    # Empty cells and tags already there are not a change.
    again = imported(client, account, csv_file([ZH_HEADER, ["王女士", "13800138000"]]))
    assert statuses(again) == [(2, "unchanged")]


def test_importing_never_touches_another_company(client, account, other_account):
    theirs = client.post(
        "/v1/customers",
        headers=other_account.headers,
        json={
            "name": "别家的王女士",
            "phone": "13800138000",
            "city": "北京",
            "tags": ["别家"],
        },
    ).json()

    report = imported(
        client,
        account,
        csv_file(
            [
                ZH_HEADER,
                ["王女士", "13800138000", "上海", "浦东新区", "老客户", ""],
            ]
        ),
    )

    assert statuses(report) == [(2, "imported")]
    assert report["rows"][0]["customer_id"] != theirs["id"]
    listed = customers(client, other_account)
    assert list(listed) == ["+8613800138000"]
    assert {k: listed["+8613800138000"][k] for k in theirs} == theirs
    assert customers(client, account)["+8613800138000"]["name"] == "王女士"


# --- files refused as a whole ----------------------------------------------------------------


REFUSED_FILES = [
    pytest.param(b"", "customers.csv", 422, "empty", id="empty"),
    pytest.param(b"\r\n \r\n\r\n", "customers.csv", 422, "empty", id="only-blank-lines"),
    pytest.param(OLE_MAGIC + bytes(range(256)) * 8, "customers.xls", 415, ".xls", id="old-xls"),
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        "customers.csv",
        415,
        "neither CSV",
        id="binary-junk",
    ),
    pytest.param(
        SMALL_XLSX[: len(SMALL_XLSX) // 2], "customers.xlsx", 422, "damaged", id="truncated-xlsx"
    ),
    pytest.param(
        b"PK\x03\x04" + b"\x00\x01 not really a zip " * 50,
        "customers.xlsx",
        422,
        "damaged",
        id="zip-magic-then-junk",
    ),
    pytest.param(
        corrupt_deflate(SMALL_XLSX, "xl/worksheets/sheet1.xml"),
        "customers.xlsx",
        422,
        "damaged",
        id="xlsx-bad-sheet-data",
    ),
    pytest.param(
        corrupt_deflate(SMALL_XLSX, "xl/theme/theme1.xml"),
        "customers.xlsx",
        422,
        "damaged",
        id="xlsx-bad-theme-data",
    ),
    pytest.param(
        rezip(SMALL_XLSX, "xl/worksheets/sheet1.xml", lambda xml: xml[: len(xml) // 2]),
        "customers.xlsx",
        422,
        "damaged",
        id="xlsx-truncated-sheet-xml",
    ),
]


@pytest.mark.parametrize(("data", "filename", "status", "phrase"), REFUSED_FILES)
def test_unreadable_files_are_refused_with_a_sentence(
    client, account, data, filename, status, phrase
):
    response = upload(client, account, data, filename)

    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.endswith(".")
    assert phrase in detail
    assert customers(client, account) == {}


def test_a_header_without_a_phone_column_lists_what_was_found(client, account):
    data = csv_file([["姓名", "地址", "备注"], ["王女士", "浦东新区 1203", ""]])

    response = upload(client, account, data)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "phone" in detail and "手机号" in detail
    assert "'姓名', '地址', '备注'" in detail
    assert customers(client, account) == {}


def test_more_rows_than_the_limit_is_refused_whole(client, account, monkeypatch):
    monkeypatch.setattr(get_settings(), "import_max_rows", 3)
    rows: list[list[object]] = [["姓名", "手机号"]]
    rows += [[f"客户{i}", f"1390000{i:04d}"] for i in range(4)]

    response = upload(client, account, csv_file(rows))

    assert response.status_code == 413
    assert "3" in response.json()["detail"] and "split" in response.json()["detail"]
    assert customers(client, account) == {}
    # Exactly the limit passes; blank lines do not count as customers.
    fits = csv_file([*rows[:2], [], *rows[2:4], [], []])
    assert imported(client, account, fits)["imported"] == 3


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli_tenant(committed_db: Database) -> Iterator[int]:
    """A committed company for the CLI, deleted (with its customers) afterwards."""
    with committed_db.session() as session:
        tenant = tenancy.create_tenant(
            session=session, name=f"命令行家政 {uuid.uuid4().hex[:6]}", signature="测试家政"
        )
        tenant_id = tenant.id
    try:
        yield tenant_id
    finally:
        with committed_db.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
        with committed_db.session() as session:
            left = session.scalar(select(func.count()).where(Customer.tenant_id == tenant_id))
        assert left == 0


def run_cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli_app, list(args))


def committed_phones(database: Database, tenant_id: int) -> set[str]:
    with database.session() as session:
        return set(session.scalars(select(Customer.phone).where(Customer.tenant_id == tenant_id)))


def test_cli_imports_a_file_and_writes_the_report(committed_db, cli_tenant, tmp_path):
    source = tmp_path / "客户名单.csv"
    source.write_bytes(
        csv_file(
            [
                ZH_HEADER,
                ["王女士", "13800138000", "上海", "浦东新区", "老客户", ""],
                ["前台", "010 6552 9988", "", "", "", ""],
                ["李先生", "13900139000", "", "", "", ""],
            ],
            encoding="gb18030",
        )
    )
    report = tmp_path / "report.csv"

    result = run_cli(
        "customers", "import", str(source), "--tenant", str(cli_tenant), "--report", str(report)
    )

    assert result.exit_code == 0, result.output
    assert "2 imported, 0 updated, 0 unchanged, 1 rejected" in result.stdout
    assert "fixed-line" in result.stdout  # the table of rejected rows
    assert "3/3" in result.stderr  # the progress bar reached the end
    assert committed_phones(committed_db, cli_tenant) == {"+8613800138000", "+8613900139000"}
    lines = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8-sig"))))
    assert [(r["line"], r["status"], r["phone"]) for r in lines] == [
        ("2", "imported", "+8613800138000"),
        ("3", "rejected", ""),
        ("4", "imported", "+8613900139000"),
    ]
    assert "fixed-line" in lines[1]["reason"]
    assert lines[0]["customer_id"].isdigit() and lines[1]["customer_id"] == ""

    again = run_cli("customers", "import", str(source), "--tenant", str(cli_tenant))
    assert again.exit_code == 0, again.output
    assert "0 imported, 0 updated, 2 unchanged, 1 rejected" in again.stdout


def test_cli_exits_1_when_no_row_could_be_imported(committed_db, cli_tenant, tmp_path):
    source = tmp_path / "bad.csv"
    source.write_bytes(
        csv_file(
            [
                ["姓名", "手机号"],
                ["前台", "010 6552 9988"],
                ["", "13800138000"],
            ]
        )
    )

    result = run_cli("customers", "import", str(source), "--tenant", str(cli_tenant))

    assert result.exit_code == 1, result.output
    assert "0 imported, 0 updated, 0 unchanged, 2 rejected" in result.stdout
    assert committed_phones(committed_db, cli_tenant) == set()


def test_cli_refuses_an_old_xls_with_a_sentence(committed_db, cli_tenant, tmp_path):
    source = tmp_path / "客户名单.xls"
    source.write_bytes(OLE_MAGIC + bytes(range(256)) * 8)

    result = run_cli("customers", "import", str(source), "--tenant", str(cli_tenant))

    assert result.exit_code == 1
    assert ".xls" in result.stderr and "xlsx" in result.stderr
    assert "Traceback" not in result.output
    assert committed_phones(committed_db, cli_tenant) == set()


# --- size ------------------------------------------------------------------------------------


def test_ten_thousand_rows_import_in_seconds(client, account):
    rows: list[list[object]] = [ZH_HEADER]
    rows += [
        [f"客户{i}", f"139{i:08d}", "上海", "浦东新区", "老客户、有宠物" if i % 3 == 0 else "", ""]
        for i in range(10_000)
    ]
    data = csv_file(rows)

    started = time.perf_counter()
    response = upload(client, account, data)
    elapsed = time.perf_counter() - started

    assert response.status_code == 200, response.text[:500]
    report = response.json()
    assert (report["imported"], report["rejected"]) == (10_000, 0)
    assert [r["row"] for r in report["rows"]] == list(range(2, 10_002))
    assert elapsed < 30, f"10,000 rows took {elapsed:.1f} s"
    assert client.get("/v1/customers?limit=1", headers=account.headers).json()["total"] == 10_000
    tagged = client.get("/v1/customers?limit=1&tag=有宠物", headers=account.headers).json()
    assert tagged["total"] == 3334


def test_a_time_zone_too_long_for_a_file_name_is_a_rejected_row(client, account):
    data = csv_file(
        [
            ["姓名", "手机号", "时区"],
            ["王女士", "13800138000", "Asia/" + "x" * 300],
            ["陈女士", "13700137000", "Asia/Shanghai"],
        ]
    )

    report = imported(client, account, data)

    assert statuses(report) == [(2, "rejected"), (3, "imported")]
    assert "time zone" in report["rows"][0]["reason"]


# --- the collector paused while rows are read and written -----------------------------------


def test_the_collector_is_paused_inside_and_back_after_nested_uses_and_errors() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one leaving does not switch it back on
    assert gc.isenabled()
    with pytest.raises(Invalid):
        read_customer_file(b"\xef\xbb\xbf", max_rows=10)
    assert gc.isenabled()


def test_the_collector_stays_off_when_it_was_off_before() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
