"""The streamed POST /runs body (wes_arvados/client/multipart.py)."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

from wes_arvados.client.multipart import CHUNK, MultipartBody


def test_the_body_is_as_long_as_announced_streams_files_in_pieces_and_parses_back(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (CHUNK // 128 + 3))  # more than two pieces
    (tmp_path / "a.cwl").write_text("cwlVersion: v1.2\n")
    body = MultipartBody(fields=[("workflow_url", "dir/a.cwl"), ("workflow_params", '{"x": "é"}')],
                         files=[("workflow_attachment", "dir/a.cwl", tmp_path / "a.cwl"),
                                ("workflow_attachment", 'we"ird\nname', big)])
    sent: list = []
    pieces = list(body.chunks(sent.append))
    data = b"".join(pieces)
    assert len(data) == body.length()
    assert max(len(p) for p in pieces) <= CHUNK and sum(sent) == big.stat().st_size + len("cwlVersion: v1.2\n")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {body.content_type}\r\n\r\n".encode() + data)
    parts = [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_payload(decode=True))
             for p in message.iter_parts()]
    assert parts == [("workflow_url", None, b"dir/a.cwl"), ("workflow_params", None, '{"x": "é"}'.encode()),
                     ("workflow_attachment", "dir/a.cwl", b"cwlVersion: v1.2\n"),
                     ("workflow_attachment", "we%22ird%0Aname", big.read_bytes())]
