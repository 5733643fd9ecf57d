"""Plugin discovery: the SDK's abstract methods, `servegauge plugins`, and
the one-line errors for unknown, broken, clashing and failing plugins.

Third-party packages are made the way pip leaves them on disk: a module and
a `NAME-VERSION.dist-info` folder with METADATA and entry_points.txt, in a
folder put on PYTHONPATH, so importlib.metadata and stevedore find them as
they find any installed package."""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_engine
from engine.arguments import Arguments
from plugins import ApiPluginBase, DatasetPluginBase, register_api, register_dataset
from plugins import registry
from test_plugins_datasets import assert_one_line_error

URL = "http://127.0.0.1:9/v1/chat/completions"
BUILTIN_APIS = ["custom", "dashscope", "openai"]
BUILTIN_DATASETS = ["builtin", "custom", "flickr8k", "line_by_line", "longalpaca", "mooncake_trace", "openqa",
                    "random", "sharegpt", "speed_benchmark", "workload_trace"]

GOOD_API = """
from plugins import ApiPluginBase

class Api(ApiPluginBase):
    '''{doc}'''

    def build_request(self, messages, param=None):
        return {{"messages": messages}}

    def parse_responses(self, responses, request=None, **kwargs):
        return None, None
"""


def make_dist(site, name, version, entry_points, modules):
    """Install a package by hand, as pip would lay it out."""
    os.makedirs(site, exist_ok=True)
    for filename, code in modules.items():
        with open(os.path.join(site, filename), "w") as f:
            f.write(textwrap.dedent(code))
    info = os.path.join(site, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        for group, lines in entry_points.items():
            f.write(f"[{group}]\n" + "".join(line + "\n" for line in lines) + "\n")
    return str(site)


def engine(*args, pythonpath=None, check=False):
    env = {"PYTHONPATH": os.pathsep.join(map(str, pythonpath))} if pythonpath else None
    return run_engine(*args, env=env, check=check, timeout=60)


# --- the SDK -----------------------------------------------------------------------

def test_abstract_methods_are_enforced():
    class NoParse(ApiPluginBase):
        def build_request(self, messages, param=None):
            return {}

    class NoMessages(DatasetPluginBase):
        pass

    with pytest.raises(TypeError, match="parse_responses"):
        NoParse(Arguments())
    with pytest.raises(TypeError, match="build_messages"):
        NoMessages(Arguments())


def test_sdk_imports_and_evalscope_helpers():
    @register_api("sdk_probe_api")
    class Probe(ApiPluginBase):
        def build_request(self, messages, param=None):
            query = {"model": "%m", "input": ["%p", {"x": "%p!"}]}
            return ApiPluginBase.replace_values(query, param.model, messages[0]["content"])

        def parse_responses(self, responses, request=None, **kwargs):
            return 1, 2

    @register_dataset(["sdk_probe_data", "sdk_probe_data2"])
    class Data(DatasetPluginBase):
        def build_messages(self):
            yield [self.create_message("hi")]

    from plugins.base import DefaultApiPlugin
    from plugins.registry import API_REGISTRY, DATASET_REGISTRY

    assert API_REGISTRY["sdk_probe_api"] is Probe and DATASET_REGISTRY["sdk_probe_data2"] is Data
    assert DefaultApiPlugin is ApiPluginBase
    a = Arguments(model="m", tokenizer_path="/t")
    p = Probe(a)
    assert p.model_path == "/t" and p.param is a
    assert p.build_request([{"role": "user", "content": "q"}], a) == {"model": "m", "input": ["q", {"x": "q!"}]}
    assert registry.register_api is register_api  # evalscope's import location works too


# --- servegauge plugins -----------------------------------------------------------------

def test_plugins_lists_every_builtin_with_package_version_and_description():
    proc = engine("plugins", check=True)
    lines = proc.stdout.splitlines()
    api_at, data_at = lines.index("API plugins (--api)"), lines.index("Dataset plugins (--dataset)")
    for names, section in ((BUILTIN_APIS, lines[api_at:data_at]), (BUILTIN_DATASETS, lines[data_at:])):
        for name in names:
            (line,) = [l for l in section if l.split()[:1] == [name]]
            fields = line.split()
            assert fields[1:3] == ["servegauge", "0.1.0"], line
            assert len(" ".join(fields[3:])) > 20 and "UNUSABLE" not in line, line


# --- third-party packages that go wrong --------------------------------------------

@pytest.fixture(scope="module")
def bad_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("bad_site")
    make_dist(site, "flaky-plugins", "3.1.4", {
        "servegauge.api": ["broken_api = flaky_broken:Api", "ctor_api = flaky_ctor:Api",
                           "notaplugin = flaky_ctor:helper"],
        "servegauge.datasets": ["broken_data = flaky_broken:Data"],
    }, {
        "flaky_broken.py": "raise ImportError('flaky_broken needs libfoo, which is not installed')\n",
        "flaky_ctor.py": GOOD_API.format(doc="Fails to start.") + textwrap.dedent("""
            def _init(self, param):
                raise RuntimeError('cannot reach the license server\\nsecond line')
            Api.__init__ = _init

            def helper():
                pass
            """),
    })
    return site


def test_a_run_imports_only_the_plugins_it_names(bad_site):
    """stevedore's DriverManager loads the named plugin's module alone: the
    other plugins, a broken one included, are not imported."""
    code = ("import sys; from plugins import registry; from engine.arguments import Arguments; "
            "registry.create('api', 'openai', Arguments()); registry.create('dataset', 'builtin', Arguments()); "
            "print(sorted(m for m in sys.modules if m.startswith(('plugins.api.', 'plugins.datasets.', 'flaky'))))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(bad_site)]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['plugins.api.openai',", "'plugins.datasets.builtin']"], proc.stdout


def test_plugins_lists_a_broken_plugin_with_its_error(bad_site):
    proc = engine("plugins", pythonpath=[bad_site], check=True)
    (line,) = [l for l in proc.stdout.splitlines() if l.split()[:1] == ["broken_api"]]
    assert "flaky-plugins 3.1.4" in line
    assert "UNUSABLE" in line and "ImportError: flaky_broken needs libfoo" in line
    (line,) = [l for l in proc.stdout.splitlines() if l.split()[:1] == ["notaplugin"]]
    assert "UNUSABLE" in line and "not a ApiPluginBase subclass" in line
    # the others still load
    for name in BUILTIN_APIS + ["ctor_api"]:
        assert any(l.split()[:1] == [name] and "UNUSABLE" not in l for l in proc.stdout.splitlines()), name


@pytest.mark.parametrize("argv, fragments", [
    (["--api", "broken_api"], ["--api 'broken_api'", "flaky-plugins 3.1.4", "failed to load",
                               "ImportError: flaky_broken needs libfoo", "available: "]),
    (["--dataset", "broken_data"], ["--dataset 'broken_data'", "flaky-plugins 3.1.4", "failed to load"]),
    (["--api", "ctor_api"], ["api plugin 'ctor_api'", "flaky-plugins 3.1.4", "failed to start",
                             "RuntimeError: cannot reach the license server second line"]),
    (["--api", "notaplugin"], ["--api 'notaplugin'", "not a ApiPluginBase subclass"]),
    (["--api", "no_such_api"], ["unknown --api 'no_such_api'", "available: ", "ctor_api", "openai"]),
    (["--dataset", "no_such_data"], ["unknown --dataset 'no_such_data'", "line_by_line"]),
], ids=["import-fails", "dataset-import-fails", "constructor-raises", "not-a-subclass", "unknown-api",
        "unknown-dataset"])
def test_choosing_a_bad_plugin_is_one_line_and_exit_2(bad_site, tmp_path, argv, fragments):
    proc = engine("--url", URL, "--number", 1, "--outputs-dir", tmp_path / "out", *argv, pythonpath=[bad_site])
    assert_one_line_error(proc, *fragments)
    assert not os.path.exists(tmp_path / "out")


def test_a_third_party_package_taking_a_builtin_name_is_an_error_naming_both(tmp_path):
    site = make_dist(tmp_path / "site", "openai-hijack", "0.0.7",
                     {"servegauge.api": ["openai = hijack:Api"]},
                     {"hijack.py": GOOD_API.format(doc="Pretends to be openai.")})
    proc = engine("plugins", pythonpath=[site], check=True)
    (line,) = [l for l in proc.stdout.splitlines() if l.split()[:1] == ["openai"]]
    assert "UNUSABLE" in line and "openai-hijack 0.0.7" in line and "servegauge 0.1.0" in line
    proc = engine("--url", URL, "--api", "openai", "--number", 1, "--outputs-dir", tmp_path / "out",
                  pythonpath=[site])
    assert_one_line_error(proc, "--api 'openai'", "more than one package", "openai-hijack 0.0.7",
                          "servegauge 0.1.0")


def test_the_same_distribution_seen_twice_is_not_a_conflict(tmp_path):
    # e.g. installed in a venv and also visible from the system site-packages
    for where in ("a", "b"):
        make_dist(tmp_path / where, "twice-seen", "1.0", {"servegauge.api": ["twice = twice_mod:Api"]},
                  {"twice_mod.py": GOOD_API.format(doc="Seen twice on sys.path.")})
    proc = engine("plugins", pythonpath=[tmp_path / "a", tmp_path / "b"], check=True)
    (line,) = [l for l in proc.stdout.splitlines() if l.split()[:1] == ["twice"]]
    assert "twice-seen 1.0" in line and "UNUSABLE" not in line and "Seen twice" in line



def test_a_package_registered_under_the_former_group_names_still_loads(tmp_path):
    # plugins installed before the rename declare servebench.api / servebench.datasets;
    # a distribution named servebench declaring our built-ins there (this project's
    # stale metadata) is passed over rather than clashing with them
    site = make_dist(tmp_path / "site", "old-style-plugin", "0.3", {"servebench.api": ["oldstyle = old_mod:Api"]},
                     {"old_mod.py": GOOD_API.format(doc="Registered under the former group.")})
    make_dist(tmp_path / "site", "servebench", "0.0.9", {
        "servebench.api": ["openai = plugins.api.openai:OpenaiPlugin"],
        "servebench.datasets": ["random = nowhere:Gone"]}, {})
    proc = engine("plugins", pythonpath=[site], check=True)
    (line,) = [l for l in proc.stdout.splitlines() if l.split()[:1] == ["oldstyle"]]
    assert "old-style-plugin 0.3" in line and "UNUSABLE" not in line
    for name in ("openai", "random"):
        (line,) = [l for l in proc.stdout.splitlines() if l.split()[:1] == [name]]
        assert "servegauge 0.1.0" in line and "UNUSABLE" not in line, line
    assert "servebench" not in proc.stdout + proc.stderr

def test_resolve_dedupes_one_distribution_and_refuses_two():
    a = registry.PluginInfo("api", "x", "Some-Pkg", "1.0", "", object)
    a_again = registry.PluginInfo("api", "x", "some_pkg", "1.0", "", object)
    b = registry.PluginInfo("api", "x", "other", "2.0", "", object)
    key = registry._normal
    assert registry.resolve([(key("Some-Pkg"), "m:X", a), (key("some_pkg"), "m:X", a_again)]) is a
    clash = registry.resolve([(key("Some-Pkg"), "m:X", a), (key("other"), "n:Y", b)])
    assert clash.cls is None and "Some-Pkg 1.0 and other 2.0" in clash.error


# --- --plugin-module files that go wrong -------------------------------------------

@pytest.mark.parametrize("code, fragments", [
    ("raise ValueError('bad config\\nmore')\n", ["--plugin-module", "failed to import", "ValueError: bad config more"]),
    ("import servegauge_no_such_dependency\n", ["failed to import", "ModuleNotFoundError",
                                                "servegauge_no_such_dependency"]),
    ("from plugins import ApiPluginBase, register_api\n"
     "@register_api('half_done')\n"
     "class Half(ApiPluginBase):\n"
     "    def build_request(self, messages, param=None):\n"
     "        return {}\n", ["api plugin 'half_done'", "failed to start", "Can't instantiate abstract class Half",
                             "parse_responses"]),
], ids=["raises", "missing-dependency", "abstract-method-missing"])
def test_a_bad_plugin_module_is_one_line_and_exit_2(tmp_path, code, fragments):
    module = tmp_path / "my_plugin.py"
    module.write_text(code)
    proc = engine("--url", URL, "--api", "half_done", "--number", 1, "--plugin-module", module,
                  "--outputs-dir", tmp_path / "out")
    assert_one_line_error(proc, *fragments)


def test_a_missing_plugin_module_is_one_line(tmp_path):
    proc = engine("--url", URL, "--plugin-module", tmp_path / "absent.py", "--outputs-dir", tmp_path / "out")
    assert_one_line_error(proc, "--plugin-module", "absent.py", "not found")
