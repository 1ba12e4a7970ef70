from conftest import CREATED, PROVIDER


def test_build_and_validate_examples(run, examples, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    files = list(out.glob("*.xml"))
    assert [f.name for f in files] == ["123456_FAC_20261120_000001.xml"]
    v = run("validate", str(files[0]))
    assert v.exit_code == 0, v.stderr
    assert "valid (billing v1" in v.stderr
