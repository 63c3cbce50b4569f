"""Test support: random program generators and the differential oracle (see README "Reliability").

- `hlo_strategies`: random valid HLO modules with inputs (`random_case(seed)`, `hlo_cases()`).
- `numpy_strategies`: random numpy programs for `@hlojit.jit` (`random_program(seed)`, `numpy_programs()`).
- `oracle`: compile and run a case, compare with the reference interpreter (`check_case`).
- `facts`: what the generators track so floating-point comparisons stay honest.
- `text_mutations`: mutated HLO text for the parser (`mutate`, `check_parser_input`).
- `regressions`: saving failing cases to tests/data/fuzz_regressions and loading them back.
- `source`: the choice source the generators draw from (hypothesis or a seeded `random.Random`).

Nothing here imports hypothesis until a hypothesis strategy is asked for.
"""
