"""nn-Meter's fusion rule tester on the farm.

    cases.py     which test cases (basic pairs, MON, registered), dependency order
    generate.py  test cases -> farm jobs that build + convert models as Ray tasks
    detect.py    T1 + T2 - T12 > alpha * min(T1, T2), with each verdict's confidence
    io.py        origin_testcases.json, profiled_results.json, detected_fusion_rule.json
    run.py       run_ruletest(workspace): generate -> profile -> detect, resumable

Importing this package loads none of tensorflow, torch or Ray.
"""

from nn_farm._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(globals(), {
    "BaseTestCase": "nn_farm.builder.ruletest.cases",
    "TestCase": "nn_farm.builder.ruletest.cases",
    "load_testcases": "nn_farm.builder.ruletest.cases",
    "testcase_jobs": "nn_farm.builder.ruletest.generate",
    "analyze": "nn_farm.builder.ruletest.detect",
    "RuleTestReport": "nn_farm.builder.ruletest.run",
    "ruletest": "nn_farm.builder.ruletest.run",
    "run_ruletest": "nn_farm.builder.ruletest.run",
})
