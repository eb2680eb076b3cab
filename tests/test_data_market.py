"""Market-1501 layout loaders (Market-1501, DukeMTMC-reID, the shared cuhk03p1 folder): counts, parsed
identities and cameras, the junk / distractor protocol, multi-query, the 500k distractors, bad data."""
from pathlib import Path

import pytest

from _data_fixtures import (DUKE_FILES, MARKET_FILES, MARKET_GT_BBOX, SHARED_CUHK03P1, make_duke, make_market,
                            write_images)
from snlib.errors import ConfigError
from snlib.data import (CorruptImageError, DataNotFoundError, FileNameError, Sample, load_dataset, relabel,
                        verify_images)


def _parsed(samples):
    return sorted((Path(s.path).parent.name, Path(s.path).name, s.pid, s.camid) for s in samples)


def _expected(files, folder):
    return sorted(row for row in files if row[0] == folder)


@pytest.fixture
def market(tmp_path):
    return make_market(tmp_path / "market1501" / "Market-1501-v15.09.15")


def test_market_every_identity_and_camera(market):
    ds = load_dataset("market1501", market)
    assert _parsed(ds.query) == _expected(MARKET_FILES, "query")
    assert _parsed(ds.gallery) == _expected(MARKET_FILES, "bounding_box_test")  # junk and distractors kept
    # train: original identities 2, 7, 1500 relabelled 0, 1, 2 in increasing order
    assert ds.train_pid_map == {2: 0, 7: 1, 1500: 2}
    relabelled = [(f, n, ds.train_pid_map[p], c) for f, n, p, c in _expected(MARKET_FILES, "bounding_box_train")]
    assert _parsed(ds.train) == sorted(relabelled)


def test_market_counts_exclude_junk_and_distractors(market):
    ds = load_dataset("market1501", market)
    assert (ds.num_train_pids, ds.num_train_imgs, ds.num_train_cams) == (3, 5, 5)
    assert (ds.num_query_pids, ds.num_query_imgs) == (2, 3)
    assert (ds.num_gallery_pids, ds.num_gallery_imgs) == (2, 9)   # identities 1 and 3; 0 and -1 are not
    assert ds.num_cams == 6
    table = ds.summary()
    assert "gallery junk images (pid -1): 3" in table and "gallery distractor images (pid 0): 2" in table
    assert ds.junk_pids == (-1,) and ds.distractor_pids == (0,)


def test_market_keep_junk_false_drops_only_junk(market):
    ds = load_dataset("market1501", market, keep_junk=False)
    assert sorted(s.pid for s in ds.gallery) == [0, 0, 1, 1, 3, 3]


def test_market_train_junk_and_distractors_are_not_identities(market):
    write_images(market / "bounding_box_train", ["-1_c1s1_000001_00.jpg", "0000_c2s1_000002_00.jpg"])
    ds = load_dataset("market1501", market)
    assert ds.num_train_imgs == 5 and ds.num_train_pids == 3
    assert ds.info["train_images_without_identity_left_out"] == 2


def test_market_multi_query_from_gt_bbox(market):
    ds = load_dataset("market1501", market)
    expected = sorted(name for name, kept in MARKET_GT_BBOX if kept)
    assert sorted(Path(s.path).name for s in ds.multi_query) == expected
    assert {(s.pid, s.camid) for s in ds.multi_query} <= {(s.pid, s.camid) for s in ds.query}
    assert load_dataset("market1501", market, multi_query=False).multi_query is None


def test_market_without_gt_bbox_has_no_multi_query(tmp_path):
    ds = load_dataset("market1501", make_market(tmp_path / "m", gt_bbox=False))
    assert ds.multi_query is None and ds.extra_gallery is None


def test_market_500k_distractors_as_extra_gallery(market):
    write_images(market / "images", ["0000_c1s1_100001_00.jpg", "0000_c3s4_100002_01.jpg", "-1_c2s1_100003_00.jpg"])
    ds = load_dataset("market1501", market, distractors_500k=True)
    assert sorted((s.pid, s.camid) for s in ds.extra_gallery) == [(-1, 1), (0, 0), (0, 2)]
    assert ds.num_gallery_imgs == 9  # the extra set is kept apart from the gallery
    write_images(market / "images", ["0042_c1s1_100004_00.jpg"])
    with pytest.raises(FileNameError, match="carry a real identity.*0042_c1s1_100004_00.jpg"):
        load_dataset("market1501", market, distractors_500k=True)


def test_market_500k_missing_names_where_to_get_it(market):
    with pytest.raises(DataNotFoundError, match="distractors_500k.zip"):
        load_dataset("market1501", market, distractors_500k=True)


@pytest.mark.parametrize("relative", [".", "market1501", "market1501/Market-1501-v15.09.15"])
def test_market_root_may_be_the_folder_or_a_parent(tmp_path, relative):
    data_dir = make_market(tmp_path / "market1501" / "Market-1501-v15.09.15")
    ds = load_dataset("market1501", tmp_path / relative)
    assert Path(ds.root) == data_dir.resolve() and ds.num_query_imgs == 3


def test_missing_folder_names_layout_and_source(tmp_path):
    (tmp_path / "market1501" / "bounding_box_train").mkdir(parents=True)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("market1501", tmp_path)
    message = str(err.value)
    assert "bounding_box_test" in message and "query" in message
    assert "Market-1501-v15.09.15" in message and "project_reid.html" in message


@pytest.mark.parametrize("bad_name", ["0002_c7s1_000451_03.jpg", "person2_c1.jpg", "0002_c1s1_000451_03.png.tmp"])
def test_unparseable_names_are_reported_not_skipped(market, bad_name):
    (market / "bounding_box_train" / bad_name).write_bytes(b"x")
    with pytest.raises(FileNameError) as err:
        load_dataset("market1501", market)
    assert bad_name in str(err.value) and "bounding_box_train" in str(err.value)


def test_name_errors_list_the_first_few_and_count(market):
    write_images(market / "query", [f"img{i}.jpg" for i in range(8)])
    with pytest.raises(FileNameError, match=r"8 file\(s\) in .*query.*\(and 3 more\)"):
        load_dataset("market1501", market)


def test_verify_names_every_corrupt_image(market):
    broken = market / "query" / "0001_c1s1_001051_00.jpg"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated JPEG
    (market / "bounding_box_test" / "0001_c1s1_001101_01.jpg").write_bytes(b"not an image")
    load_dataset("market1501", market)  # names are fine: loading alone does not decode
    with pytest.raises(CorruptImageError) as err:
        load_dataset("market1501", market, verify=True)
    assert "2 of" in str(err.value) and str(broken) in str(err.value)
    assert "0001_c1s1_001101_01.jpg" in str(err.value)


def test_verify_passes_on_good_images(market):
    """Verification decodes every image and returns quietly; the data set it loads is the unverified one."""
    ds = load_dataset("market1501", market, verify=True)
    assert verify_images(ds.train) is None
    plain = load_dataset("market1501", market)
    def paths(data):
        return [s.path for s in data.train + data.query + data.gallery]

    assert paths(ds) == paths(plain)


def test_relabel_is_sorted_and_stable():
    samples = [Sample("a", 40, 0), Sample("b", 7, 1), Sample("c", 40, 2), Sample("d", 12, 0)]
    out, mapping = relabel(samples)
    assert mapping == {7: 0, 12: 1, 40: 2}
    assert [s.pid for s in out] == [2, 0, 2, 1] and [s.path for s in out] == list("abcd")


def test_dukemtmc_every_identity_and_camera(tmp_path):
    data_dir = make_duke(tmp_path / "dukemtmc-reid" / "DukeMTMC-reID")
    ds = load_dataset("dukemtmc", tmp_path)
    assert _parsed(ds.query) == _expected(DUKE_FILES, "query")
    assert _parsed(ds.gallery) == _expected(DUKE_FILES, "bounding_box_test")
    assert ds.train_pid_map == {1: 0, 5: 1}
    assert sorted((s.pid, s.camid) for s in ds.train) == [(0, 1), (0, 4), (1, 7)]
    assert ds.num_gallery_pids == 2 and Path(ds.root) == data_dir.resolve()


def test_dukemtmc_rejects_market_names(tmp_path):
    data_dir = make_duke(tmp_path / "DukeMTMC-reID")
    write_images(data_dir / "query", ["0005_c2s1_000451_03.jpg"])
    with pytest.raises(FileNameError, match="0001_c2_f0046182.jpg"):
        load_dataset("dukemtmc", data_dir)


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ConfigError, match="market1501"):
        load_dataset("viper", tmp_path)


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_CUHK03P1.is_dir(), reason="../shared/data/cuhk03p1 is absent")
def test_shared_cuhk03p1_reads_as_market1501():
    ds = load_dataset("market1501", SHARED_CUHK03P1)
    assert (ds.num_train_imgs, ds.num_train_pids) == (7239, 743)
    assert (ds.num_query_imgs, ds.num_gallery_imgs) == (451, 487)
    assert ds.num_query_pids == ds.num_gallery_pids == 100
    assert sorted(ds.train_pid_map) == list(range(1, 744))
    assert {s.pid for s in ds.query} == {s.pid for s in ds.gallery} == set(range(1001, 1101))
    assert {s.camid for s in ds.query} == {0} and {s.camid for s in ds.gallery} == {1}
    assert {s.camid for s in ds.train} == {0, 1} and ds.multi_query is None
