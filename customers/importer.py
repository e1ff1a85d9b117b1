"""Read customer lists as offices keep them: CSV (UTF-8 or GBK from Excel) and XLSX.

Only reading lives here; validation and writing are ``service.upsert_rows``. Both run
with the cyclic garbage collector paused (``collector_paused``): a list makes a few
objects per row that live until the import ends and hold no cycles, and the collector's
passes over them, a full one every 20,000 rows or so, cost as much as the rest of the
reading and validating together.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import re
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple
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
# The fields of ImportedRow read from columns, in the order read_customer_file unpacks them.
_FIELDS = ("name", "phone", "region", "city", "timezone", "tags", "notes")
_TAG_SPLIT = re.compile(r"[,，;；、|/]")


class ImportedRow(NamedTuple):
    """One data row of an imported file, as read, before validation."""

    line: int
    name: str
    phone: str
    region: str | None = None
    city: str | None = None
    timezone: str | None = None
    tags: Sequence[str] = ()
    notes: str | None = None


_paused = 0
_paused_lock = threading.Lock()
_collector_was_on = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cyclic collection inside (reference counting goes on freeing as ever).

    For bulk work that makes many objects and no cycles; what is due runs at the first
    allocation after. Process-wide: nested and concurrent uses keep it paused until the
    last one leaves, and it is switched back on only if it was on before the first.
    """
    global _paused, _collector_was_on
    with _paused_lock:
        if _paused == 0:
            _collector_was_on = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0 and _collector_was_on:
                gc.enable()


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
    with collector_paused():
        return _read(data, max_rows=max_rows)


def _read(data: bytes, *, max_rows: int) -> list[ImportedRow]:
    check_file_kind(data)
    rows = _xlsx_rows(data) if data.startswith(XLSX_MAGIC) else _csv_rows(data)

    header: list[str] | None = None
    columns: dict[str, int] = {}
    picks: list[int | None] = []
    result: list[ImportedRow] = []
    for line, values in enumerate(rows, start=1):
        # every cell is text here (_csv_rows, _xlsx_rows): blank when the joined line is
        if header is None:
            if not "".join(values).strip():
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
            picks = [columns.get(f) for f in _FIELDS]
            continue
        if not "".join(values).strip():
            continue
        if len(result) >= max_rows:
            raise TooLarge(
                f"The file has more than {max_rows} customers; split it into smaller files."
            )
        width = len(values)
        name, phone, region, city, timezone, tags, notes = [
            _cell(values[index]) if index is not None and index < width else "" for index in picks
        ]
        result.append(
            ImportedRow(
                line=line,
                name=name,
                phone=phone,
                region=region or None,
                city=city or None,
                timezone=timezone or None,
                tags=tuple(t for t in _TAG_SPLIT.split(tags) if t.strip()) if tags else (),
                notes=notes or None,
            )
        )
    if header is None:
        raise Invalid("The file has no header line; the first line must name the columns.")
    return result
