"""benchmarks/bad_inputs.py: bad inputs a new user could give fail with a message naming the config key or the file.

A fast subset of its parse-time cases runs here through `snakemake -n` (about 8 s of CPU each, two at once). The
full table (49 cases, 3 of them running a job: about 2.7 minutes on two cores) is left to the script itself,
`python benchmarks/bad_inputs.py`, and is not part of the test suite.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bad_inputs.py"

# one of each kind of check made while the workflow is planned: the schema, the objective and sampler specs, the
# source selection (a folder's file, a manifest's row), the model sources and config.yaml's YAML
FAST = ["unknown-top-level-key", "sampler-field-typo", "tiny-image", "manifest-row-outside", "classifier-folder-missing",
        "yaml-error-in-config", "config-override-wrong-type"]


def load_script():
    spec = importlib.util.spec_from_file_location("bad_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bad_inputs = load_script()


def test_the_table_has_enough_distinct_cases_each_naming_what_it_expects():
    names = [case.name for case in bad_inputs.CASES]
    assert len(names) == len(set(names)) and len(names) >= 30
    for case in bad_inputs.CASES:
        assert case.expect in (bad_inputs.PARSE, bad_inputs.JOB, bad_inputs.OK), case.name
        assert bool(case.names) == (case.expect != bad_inputs.OK), case.name
        assert case.target or case.expect != bad_inputs.JOB, case.name
    assert [case.name for case in bad_inputs.select(",".join(FAST))] == FAST


def test_the_message_is_found_in_each_form_snakemake_shows_it():
    job = ("localrule check_objectives:\n    jobid: 0\nerror: 1 of 4 objectives do not fit the classifier:\n"
           "  sets.objectives.neuron.layer: layer 'x' is not a module\nRuleException:\nCalledProcessError in file "
           '"/r/rules/sets.smk", line 46:\nCommand ... returned non-zero exit status 1.\n')
    assert bad_inputs.error_message(job) == ("1 of 4 objectives do not fit the classifier:\n"
                                             "  sets.objectives.neuron.layer: layer 'x' is not a module")
    parse = ('Config file config.yaml is extended\nConfigError in file "/r/Snakefile", line 20:\n'
             "config.yaml + o.yaml (with --config overrides) is invalid:\n  sets.members: 0 is less than the minimum of 1\n"
             '  File "/r/Snakefile", line 20, in <module>\n')
    message = bad_inputs.error_message(parse)
    assert message.endswith("  sets.members: 0 is less than the minimum of 1") and message.startswith("ConfigError: ")
    assert bad_inputs.headline(message).endswith("is invalid: sets.members: 0 is less than the minimum of 1")
    planned = ('InputFunctionException in rule invariant_sets in file "/r/rules/sets.smk", line 49:\nError:\n'
               "  MissingWeightsError: no weights for 'a/b'. Looked in:\n  - /x\nWildcards:\n  job=j\n")
    assert "no weights for 'a/b'" in bad_inputs.error_message(planned)
    assert bad_inputs.error_message("Traceback (most recent call last):\nKeyError: 'world'\n") == "KeyError: 'world'"


def test_a_fast_subset_fails_while_planning_and_names_its_key_or_file(tmp_path):
    results = bad_inputs.run_cases(bad_inputs.select(",".join(FAST)), jobs=2, workdir=tmp_path)
    for result in results:
        assert result.exit_code != 0 and result.when == bad_inputs.PARSE, (result.case.name, result.output[-3000:])
        assert result.named, (result.case.name, result.case.names, result.message or result.output[-3000:])
        assert "Job stats" not in result.output, result.case.name  # refused before any job was planned
    table = bad_inputs.markdown(results)
    assert table.count("\n| ") == len(FAST) and f"{len(FAST)} cases, {len(FAST)} pass, 0 fail." in table
