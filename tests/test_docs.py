"""README.md is a short user's page (it is also the package's long_description); the details
live under docs/.  These checks keep it that way."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# the two set-up commands for a fresh machine: the main job, and the test suite
TRAIN_COMMAND = "pip install -e . && python examples/mnist_cnn.py"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_at_most_10000_characters():
    n = len(_readme())
    assert n <= 10_000, f"README.md has {n} characters; move details to docs/"


def test_readme_names_every_example():
    text = _readme()
    scripts = sorted(p.name for p in (ROOT / "examples").glob("*.py")
                     if not p.name.startswith("_"))
    assert scripts, "no examples found"
    missing = [name for name in scripts if name not in text]
    assert not missing, f"README.md does not name {missing}"


def test_docs_linked_from_readme_exist():
    links = re.findall(r"\]\((docs/[^)#\s]*)", _readme())
    assert links, "README.md links no docs/ file"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links missing files {missing}"


def test_readme_has_exactly_the_two_setup_commands():
    text = _readme()
    section = text.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.S)
    assert [b.strip() for b in blocks] == [TRAIN_COMMAND, TEST_COMMAND]
    assert text.count(TRAIN_COMMAND) == 1 and text.count(TEST_COMMAND) == 1
