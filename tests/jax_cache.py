"""One JAX compilation cache for the JAX child processes of a test session.

Building the tiny network under JAX compiles each of its eager operations, about 25 s a
process on two cores; the same programs compiled again (every child builds the same network)
are read back from this cache instead. XLA's cache is keyed by the program, its compile options
and the JAX version, so a program read back is the one compilation gives: what each test checks
is unchanged. A module that imports `jax_compilation_cache` runs its children with it.
"""

import pytest


@pytest.fixture(scope="module", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(folder))
        # Every program, however small or quick to compile (the default keeps those over 1 s).
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
        yield folder
