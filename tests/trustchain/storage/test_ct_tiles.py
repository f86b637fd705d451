"""The tile directory: files as the log's head grows, partials gone once full."""

from __future__ import annotations

from pathlib import Path

from tests.trustchain.ct.test_log import CA_B64, db, leaf, new_log  # noqa: F401
from trustchain.storage.ct_tiles import TileDirectory


def test_tiles_follow_the_head_and_partials_go_when_full(db, tmp_path: Path) -> None:  # noqa: F811
    log = new_log(db)
    directory = TileDirectory(tmp_path / "a", log)
    for i in range(200):
        log.check([leaf(f"f{i}"), CA_B64])
    log.sequence(1)
    directory.publish()
    tile = tmp_path / "a" / "tile"
    assert (tile / "0" / "000.p" / "200").read_bytes() == log.tile("0/000.p/200")
    assert (tile / "data" / "000.p" / "200").exists()
    for i in range(100):
        log.check([leaf(f"g{i}"), CA_B64])
    log.sequence(2)
    directory.publish()
    assert (tile / "0" / "000").read_bytes() == log.tile("0/000")
    assert (tile / "data" / "000").read_bytes() == log.tile("data/000")
    assert not (tile / "0" / "000.p").exists() and not (tile / "data" / "000.p").exists()
    assert (tile / "0" / "001.p" / "44").exists() and (tile / "1" / "000.p" / "1").exists()
    assert (tmp_path / "a" / "checkpoint").read_text().split("\n")[1] == "300"
    assert len(list((tmp_path / "a" / "issuer").iterdir())) == 1
    # A restart (a fresh writer over the same files) changes nothing and loses nothing.
    assert TileDirectory(tmp_path / "a", log).publish() == 1  # only the checkpoint


def test_the_checkpoint_file_takes_cosignatures_of_its_own_checkpoint_only(  # noqa: F811
        db, tmp_path: Path) -> None:
    log = new_log(db)
    directory = TileDirectory(tmp_path / "a", log)
    log.check([leaf("c0"), CA_B64])
    log.sequence(1)
    directory.publish()
    path = tmp_path / "a" / "checkpoint"
    plain = path.read_text()
    cosigned = plain + "— w.example AAAA\n"
    plan = directory.plan_cosigned(cosigned)
    assert plan is not None and plan.apply() == 1 and path.read_text() == cosigned
    assert directory.plan_cosigned(cosigned) is None  # written already
    log.check([leaf("c1"), CA_B64])
    log.sequence(2)
    queued = directory.plan()  # the next head, queued before an old cosigned one arrives
    assert directory.plan_cosigned(cosigned + "— v.example BBBB\n") is None
    queued.apply()
    assert path.read_text().split("\n")[1] == "2" and "w.example" not in path.read_text()
