# %% [markdown]
# # Task farming: a grid search and an evolutionary run on the same engines
#
# The algorithms of the other notebooks are *one* computation spread over every engine
# (SPMD). Many workloads are instead lots of *independent* tasks: fitting one model per
# hyper-parameter setting, evaluating one individual of a population. The same cluster runs
# those too, load-balanced, each task on whichever engine is free:
#
# * `with cluster.joblib():` makes joblib, and so scikit-learn's `n_jobs=-1`, run on the
#   engines (the UL HPC School's ipyparallel + joblib pattern);
# * `cluster.map(f, iterable)` is the built-in `map` over the engines, usable as DEAP's
#   `toolbox.map` (the scoop pattern).
#
# Functions defined in the notebook are shipped to the engines by value.

# %%
%matplotlib inline
import random
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import clusterml as cml

N_ENGINES = 2

# %%
cluster = cml.Cluster(n=N_ENGINES)
cluster

# %% [markdown]
# ## 1. A scikit-learn grid search through the joblib backend
#
# A support-vector classifier on 1,500 generated samples, 5 × 4 settings of `C` and `gamma`,
# 3-fold cross-validation: 60 fits, spread over the engines.

# %%
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

X, y = make_classification(n_samples=1500, n_features=20, n_informative=8, n_redundant=4,
                           class_sep=0.8, random_state=0)
grid = {"C": [0.1, 0.3, 1.0, 3.0, 10.0], "gamma": [0.003, 0.01, 0.03, 0.1]}

t0 = time.perf_counter()
with cluster.joblib():
    search = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1, verbose=1).fit(X, y)
print(f"{len(search.cv_results_['params']) * 3} fits on the engines in {time.perf_counter() - t0:.1f} s; "
      f"best {search.best_params_}, accuracy {search.best_score_:.3f}")

# %%
scores = pd.DataFrame(search.cv_results_["mean_test_score"].reshape(len(grid["C"]), len(grid["gamma"])),
                      index=grid["C"], columns=grid["gamma"])
fig, ax = plt.subplots(figsize=(5, 4))
im = ax.imshow(scores.values, cmap="viridis", origin="lower")
ax.set_xticks(range(len(grid["gamma"])), grid["gamma"])
ax.set_yticks(range(len(grid["C"])), grid["C"])
for i in range(scores.shape[0]):
    for j in range(scores.shape[1]):
        ax.text(j, i, f"{scores.values[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
ax.set_xlabel("gamma")
ax.set_ylabel("C")
ax.set_title("SVC cross-validated accuracy")
fig.colorbar(im)
plt.show()

# %% [markdown]
# ## 2. An evolutionary algorithm with DEAP, evaluated through `cluster.map`
#
# Minimise the 6-dimensional Rastrigin function (many local minima, global minimum 0 at the
# origin) with a simple genetic algorithm. DEAP calls `toolbox.map(evaluate, population)`
# once per generation; registering `cluster.map` there evaluates the individuals on the
# engines. The random choices (selection, crossover, mutation) stay in the notebook, so a
# seed gives the same run whatever evaluates the individuals.

# %%
from deap import algorithms, base, creator, tools

DIM = 6


def rastrigin(individual):
    x = np.asarray(individual)
    return (10 * len(x) + float(np.sum(x * x - 10 * np.cos(2 * np.pi * x))),)


if not hasattr(creator, "FitnessMin"):
    creator.create("FitnessMin", base.Fitness, weights=(-1.0,))
    creator.create("Individual", list, fitness=creator.FitnessMin)


def make_toolbox(map_function):
    tb = base.Toolbox()
    tb.register("attr", random.uniform, -5.12, 5.12)
    tb.register("individual", tools.initRepeat, creator.Individual, tb.attr, n=DIM)
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("evaluate", rastrigin)
    tb.register("mate", tools.cxBlend, alpha=0.3)
    tb.register("mutate", tools.mutGaussian, mu=0.0, sigma=0.3, indpb=0.3)
    tb.register("select", tools.selTournament, tournsize=3)
    tb.register("map", map_function)
    return tb


def evolve(map_function, seed=1, generations=30, verbose=False):
    random.seed(seed)
    tb = make_toolbox(map_function)
    pop = tb.population(n=80)
    hof = tools.HallOfFame(1)
    stats = tools.Statistics(lambda ind: ind.fitness.values[0])
    stats.register("min", np.min)
    stats.register("avg", np.mean)
    pop, log = algorithms.eaSimple(pop, tb, cxpb=0.6, mutpb=0.3, ngen=generations, stats=stats,
                                   halloffame=hof, verbose=verbose)
    return hof[0], log


t0 = time.perf_counter()
best, log = evolve(cluster.map, verbose=True)      # the logbook line per generation is the progress
print(f"best fitness {best.fitness.values[0]:.4f} at {np.round(best, 3)}; {time.perf_counter() - t0:.1f} s")

# %%
gen, fmin, favg = log.select("gen", "min", "avg")
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(gen, favg, label="population mean")
ax.semilogy(gen, fmin, label="best of the generation")
ax.set_xlabel("generation")
ax.set_ylabel("Rastrigin value")
ax.set_title("Genetic algorithm, individuals evaluated on the engines")
ax.legend()
plt.show()

# %%
cluster.stop()

# %% [markdown]
# ## Check against one process
#
# The same grid search with `n_jobs=1` and the same evolutionary run with the built-in `map`,
# both in this process, must give the same numbers.

# %%
ref_search = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(X, y)
np.testing.assert_allclose(search.cv_results_["mean_test_score"], ref_search.cv_results_["mean_test_score"],
                           rtol=0, atol=1e-12)
assert search.best_params_ == ref_search.best_params_
assert search.best_score_ > 0.8

ref_best, ref_log = evolve(map)
assert list(best) == list(ref_best), (best, ref_best)
np.testing.assert_allclose(log.select("min"), ref_log.select("min"), rtol=1e-12)
np.testing.assert_allclose(log.select("avg"), ref_log.select("avg"), rtol=1e-12)
assert best.fitness.values[0] < fmin[0] / 5                  # the run improved on the random start
print("ALL CHECKS PASSED")
