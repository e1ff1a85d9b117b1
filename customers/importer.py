"""Read customer lists as offices keep them: CSV (UTF-8 or GBK from Excel) and XLSX.

Only reading lives here; validation and writing are ``service.upsert_rows``.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import ParseError

from huifang.errors import Invalid, TooLarge, UnsupportedType

# Header spellings seen in real lists, normalised by _key(): NFKC, lower case, no spaces.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "name": (
        "name",
        "customer",
        "customername",
        "姓名",
        "客户",
        "客户姓名",
        "客户名称",
        "名字",
        "称呼",
        "联系人",
    ),
    "phone": (
        "phone",
        "mobile",
        "mobilephone",
        "cell",
        "tel",
        "telephone",
        "phonenumber",
        "手机",
        "手机号",
        "手机号码",
        "电话",
        "联系电话",
        "电话号码",
        "联系方式",
    ),
    "region": ("region", "province", "state", "地区", "省", "省份", "区域"),
    "city": ("city", "district", "城市", "市", "区", "区县"),
    "timezone": ("timezone", "tz", "时区"),
    "tags": ("tags", "tag", "labels", "标签", "分组"),
    "notes": ("notes", "note", "remark", "remarks", "comment", "备注", "说明"),
}
_ALIAS_TO_FIELD = {alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases}
_TAG_SPLIT = re.compile(r"[,，;；、|/]")


@dataclass
class ImportedRow:
    """One data row of an imported file, as read, before validation."""

    line: int
    name: str
    phone: str
    region: str | None = None
    city: str | None = None
    timezone: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None


XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls and other Office 97 files


def _key(header: Any) -> str:
    text = unicodedata.normalize("NFKC", str(header or "")).strip().lower()
    return re.sub(r"[\s_\-*:：()（）]", "", text)


def _cell(value: Any) -> str:
    """A cell as text; spreadsheets store phone numbers as numbers, sometimes as floats."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return unicodedata.normalize("NFC", str(value)).strip()


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise Invalid(
        "The CSV file is neither UTF-8 nor GBK text; save it from Excel as "
        "'CSV UTF-8' and upload it again."
    )


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    text = _decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        yield from csv.reader(io.StringIO(text, newline=""), dialect)
    except csv.Error as exc:
        raise Invalid(f"The CSV file cannot be read ({exc}); save it again as CSV.") from None


# What openpyxl raises on a damaged workbook, when opening it and while reading its rows
# (read-only mode streams the sheet): a bad zip, bad deflate data, bad or truncated XML.
_DAMAGED_XLSX = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    KeyError,
    OSError,
    ValueError,
    ParseError,
)


def _damaged(exc: BaseException) -> Invalid:
    return Invalid(
        f"The XLSX file is damaged or not an Excel workbook ({exc.__class__.__name__}); "
        "open it in Excel, save it again and retry."
    )


def _xlsx_rows(data: bytes) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except _DAMAGED_XLSX as exc:
        raise _damaged(exc) from None
    try:
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            yield [_cell(v) for v in values]
    except _DAMAGED_XLSX as exc:
        raise _damaged(exc) from None
    finally:
        book.close()


def check_file_kind(data: bytes) -> None:
    """Refuse, cheaply and before any row is read, what is not a CSV or XLSX list at all."""
    if not data.strip():
        raise Invalid("The file is empty; it needs a header line and one customer per line.")
    if data.startswith(OLE_MAGIC):
        raise UnsupportedType("This is an old .xls workbook; save it as .xlsx or CSV and retry.")
    if not data.startswith(XLSX_MAGIC) and b"\x00" in data:
        # anywhere: a NUL deep in the file is binary, and PostgreSQL refuses it
        raise UnsupportedType("This file is neither CSV text nor an XLSX workbook.")


def read_customer_file(data: bytes, *, max_rows: int) -> list[ImportedRow]:
    """The data rows of a CSV or XLSX customer list, decided by content, not file name."""
    check_file_kind(data)
    rows = _xlsx_rows(data) if data.startswith(XLSX_MAGIC) else _csv_rows(data)

    header: list[str] | None = None
    columns: dict[str, int] = {}
    result: list[ImportedRow] = []
    for line, values in enumerate(rows, start=1):
        if header is None:
            if not any(v.strip() for v in values):
                continue
            header = values
            for index, name in enumerate(values):
                column = _ALIAS_TO_FIELD.get(_key(name))
                if column and column not in columns:
                    columns[column] = index
            missing = [f for f in ("name", "phone") if f not in columns]
            if missing:
                found = ", ".join(repr(h) for h in values if str(h).strip()) or "nothing"
                raise Invalid(
                    "The first line must name the columns; we need a name column (姓名 or name)"
                    f" and a phone column (手机号 or phone), and found {found}."
                )
            continue
        if not any(str(v).strip() for v in values):
            continue
        if len(result) >= max_rows:
            raise TooLarge(
                f"The file has more than {max_rows} customers; split it into smaller files."
            )

        def get(column: str, values: list[str] = values) -> str:
            index = columns.get(column)
            return _cell(values[index]) if index is not None and index < len(values) else ""

        result.append(
            ImportedRow(
                line=line,
                name=get("name"),
                phone=get("phone"),
                region=get("region") or None,
                city=get("city") or None,
                timezone=get("timezone") or None,
                tags=[t for t in _TAG_SPLIT.split(get("tags")) if t.strip()],
                notes=get("notes") or None,
            )
        )
    if header is None:
        raise Invalid("The file has no header line; the first line must name the columns.")
    return result
