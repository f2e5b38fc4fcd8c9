"""The data readers (duhl_cl.io): a clear error naming the file and the place, or a correct
read; never a raw traceback from gzip or NumPy, nor a row dropped silently."""

import gzip

import numpy as np
import pytest

from duhl_cl import io
from duhl_cl.cli import main
from duhl_cl.io import load_dataset, load_svmlight

ROWS = "1 1:0.5 3:2\n-1 2:1.5\n1 1:-1 2:2 3:0.25\n"


def test_truncated_and_misnamed_gzip(tmp_path):
    good = tmp_path / "d.svm.gz"
    good.write_bytes(gzip.compress(ROWS.encode() * 200))
    cut = tmp_path / "cut.svm.gz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"cut\.svm\.gz: the gzip stream is truncated"):
        load_dataset(cut)
    plain = tmp_path / "plain.svm.gz"
    plain.write_text(ROWS)
    with pytest.raises(ValueError, match=r"plain\.svm\.gz: not a gzip file"):
        load_dataset(plain)
    X, y = load_dataset(good)
    assert X.shape == (600, 3) and list(y[:3]) == [1, -1, 1]


def test_csv_header_detected(tmp_path):
    with_header = tmp_path / "h.csv"
    with_header.write_text("a,b,target\n1,2,3\n4,5,6\n")
    X, y = load_dataset(with_header)
    np.testing.assert_array_equal(X, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(y, [3, 6])
    # No header: the first row is data, not dropped.
    bare = tmp_path / "n.csv"
    bare.write_text("1,2,3\n4,5,6\n")
    X, y = load_dataset(bare)
    np.testing.assert_array_equal(y, [3, 6])
    # Forced either way.
    X, y = load_dataset(bare, header=True)
    np.testing.assert_array_equal(y, [6])
    # CRLF line endings, no newline at the end.
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(b"a,b,t\r\n1,2,3\r\n4,5,6")
    X, y = load_dataset(crlf)
    np.testing.assert_array_equal(y, [3, 6])


def test_csv_errors_name_file_line_and_column(tmp_path):
    only = tmp_path / "only.csv"
    only.write_text("a,b,target\n")
    with pytest.raises(ValueError, match=r"only\.csv: a header \(a, b, target\) and no samples"):
        load_dataset(only)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv: empty file"):
        load_dataset(empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,target\n1,2,3\n4,x5,6\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: column 2 is 'x5', not a number"):
        load_dataset(bad)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,target\n1,2,3\n4,5\n")
    with pytest.raises(ValueError, match=r"ragged\.csv:3: 2 columns where the first row has 3"):
        load_dataset(ragged)


def test_svmlight_comments_qid_and_no_final_newline(tmp_path):
    f = tmp_path / "q.svm"
    f.write_text("# a comment line\n1 qid:3 1:0.5 3:2 # trailing comment\r\n-1 qid:3 2:1.5")
    X, y = load_dataset(f)
    assert X.shape == (2, 3) and list(y) == [1, -1]
    np.testing.assert_array_equal(X.toarray(), [[0.5, 0, 2], [0, 1.5, 0]])
    empty = tmp_path / "e.svm"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"e\.svm: no samples found"):
        load_dataset(empty)


def _svmlight_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        cols = np.sort(rng.choice(50, size=rng.integers(0, 6), replace=False)) + 1
        lines.append(
            " ".join([str(1 if i % 3 else -1)] + [f"{c}:{rng.standard_normal():.5g}" for c in cols])
        )
    return "\n".join(lines) + "\n"


def test_svmlight_read_in_chunks_gives_the_whole_read(tmp_path, monkeypatch):
    """Big files are parsed a chunk at a time: no read is larger than the chunk (plus the line
    that completes it), and chunks of a few bytes give the same matrix as one chunk."""
    f = tmp_path / "big.svm.gz"
    f.write_bytes(gzip.compress(_svmlight_rows(400).encode()))
    whole, y_whole = load_svmlight(f)
    reads = []
    real = io._open_bytes

    class Recording:
        def __init__(self, path):
            self.f = real(path)

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

        def readline(self):
            return self.f.readline()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(io, "_open_bytes", Recording)
    for chunk in (7, 100, 4096):
        reads.clear()
        X, y = load_svmlight(f, chunk_bytes=chunk)
        assert reads and all(0 < n <= chunk for n in reads)
        assert X.shape == whole.shape and (X != whole).nnz == 0
        np.testing.assert_array_equal(y, y_whole)


def test_svmlight_errors_name_the_line_past_the_first_chunk(tmp_path):
    text = _svmlight_rows(60)
    f = tmp_path / "bad.svm"
    f.write_text(text + "1 3:0.5 x:1\n")
    with pytest.raises(ValueError, match=r"bad\.svm:61: not svmlight format"):
        load_svmlight(f, chunk_bytes=64)
    zero = tmp_path / "zero.svm"
    zero.write_text(text + "1 0:2\n")
    with pytest.raises(ValueError, match=r"zero\.svm:61: feature index 0; .* start at 1"):
        load_svmlight(zero, chunk_bytes=64)
    # Unsorted and repeated indices, which libsvm tolerates, are summed, in any chunk.
    loose = tmp_path / "loose.svm"
    loose.write_text(text + "1 4:1 2:0.5 4:2\n")
    X, _ = load_svmlight(loose, chunk_bytes=64)
    np.testing.assert_array_equal(X[60].toarray()[0, :4], [0, 0.5, 0, 3])


def test_train_refuses_a_wider_test_set(tmp_path, device, capsys):
    train, test = tmp_path / "train.svm", tmp_path / "test.svm"
    rng = np.random.default_rng(0)
    with open(train, "w") as f:
        for i in range(40):
            f.write(
                f"{1 if i % 2 else -1} 1:{rng.standard_normal():.4f} 2:{rng.standard_normal():.4f}\n"
            )
    test.write_text("1 1:0.5 5:1.0\n-1 2:0.25\n")
    rc = main(["train", "--model", "svm", "--data", str(train), "--test", str(test)])
    assert rc == 2
    got = capsys.readouterr()
    assert "the test data has 5 features, the training data 2" in got.err
    assert "round" not in got.out and "objective" not in got.out  # refused before training


def test_cli_header_flag(tmp_path, device, capsys):
    f = tmp_path / "n.csv"
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    np.savetxt(f, np.column_stack([X, X @ [1.0, -2.0, 0.5]]), delimiter=",")
    assert main(["train", "--model", "ridge", "--data", str(f)]) == 0
    assert "(30 x 3" in capsys.readouterr().out
    assert main(["train", "--model", "ridge", "--data", str(f), "--header"]) == 0
    assert "(29 x 3" in capsys.readouterr().out
