"""The job memory budget refuses before the work, and says what and how much."""

import pytest

from plugin.budget import MIB, BudgetExceeded, MemoryBudget


def test_charge_refuses_over_the_limit_and_records_nothing() -> None:
    budget = MemoryBudget("Binary/7", limit_bytes=100 * MIB)
    budget.charge(60 * MIB, "page 1 image")
    with pytest.raises(BudgetExceeded, match=r"Binary/7: page 2 image needs 50.0 MiB .* 60.0 MiB"):
        budget.charge(50 * MIB, "page 2 image")
    assert budget.held_bytes == 60 * MIB
    budget.release(60 * MIB)
    budget.charge(50 * MIB, "page 2 image")
    assert budget.peak_bytes == 60 * MIB


def test_check_charges_nothing_and_negative_sizes_are_refused() -> None:
    budget = MemoryBudget("Media/3", limit_bytes=10)
    budget.check(10, "samples")
    assert budget.held_bytes == 0
    with pytest.raises(BudgetExceeded, match="impossible size"):
        budget.check(-1, "samples")


def test_held_releases_after_the_block_even_when_it_fails() -> None:
    budget = MemoryBudget("Binary/9", limit_bytes=100)
    with budget.held(80, "a copy"):
        assert budget.held_bytes == 80
        with pytest.raises(BudgetExceeded, match="another copy needs"):
            budget.charge(30, "another copy")
    with pytest.raises(RuntimeError), budget.held(60, "a copy"):
        raise RuntimeError("the work failed")
    assert (budget.held_bytes, budget.peak_bytes) == (0, 80)
