# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chairs and Cook's distance
#
# The paper opens with a regression small enough to do by hand {cite:p}`karthikeyan2022revisiting`.
# A second-hand shop sells four chairs, and we want to know how a chair's height grows with its
# weight. One chair is much lighter than the others. How much does that one chair shape the line we
# fit, and so the prediction we would make for a new chair?
#
# The classical answer is to take the chair out, refit, and look at what changed. The change of one
# prediction is the *leave-one-out* (LOO) distance; summing the squared changes of all fitted values
# and scaling by the noise level gives Cook's distance {cite:p}`cook1977detection`. Every number on
# this page is computed by `infcore.toys`; the unit tests check those functions against statsmodels.

# %% tags=["parameters"]
# Each chair is (weight in kg, height in cm); the first one is left out.
chairs = [[3.0, 60.0], [8.5, 85.0], [9.0, 90.0], [9.5, 95.0]]
leave_out = 0
test_weight = 10.0
test_height = 100.0

# %%
import matplotlib.pyplot as plt
import numpy as np
from myst_nb import glue

from infcore import plots, toys, validation

validation.check_page("01_chairs", globals())
result = toys.chair_influence(np.array(chairs), leave_out=leave_out, test_weight=test_weight)
# the refit through three collinear chairs has an intercept of about 1e-13: show it as 0
intercept_without = float(np.round(result.without.intercept, 9)) + 0.0

# %% [markdown]
# ## Two fits
#
# Least squares on all four chairs gives a slope of {glue:text}`slope_full:.2f` cm per kg and an
# intercept of {glue:text}`intercept_full:.1f` cm. Without the light chair the other three lie on a
# line of slope {glue:text}`slope_without:.2f` and intercept {glue:text}`intercept_without:.2f`.
# The paper quotes about 5.1 and 44 for the first fit and 10 for the second: the same values, rounded.

# %%
glue("slope_full", result.full.slope, display=False)
glue("intercept_full", result.full.intercept, display=False)
glue("slope_without", result.without.slope, display=False)
glue("intercept_without", intercept_without, display=False)
print(f"all chairs:      height = {result.full.intercept:.4f} + {result.full.slope:.4f} * weight")
print(f"without chair {leave_out}: height = {intercept_without:.4f} + {result.without.slope:.4f} * weight")

# %% [markdown]
# ## The leave-one-out distance
#
# For a test chair of {glue:text}`test_weight:.0f` kg (its true height is
# {glue:text}`test_height:.0f` cm) the full fit predicts {glue:text}`pred_full:.2f` cm and the fit
# without the light chair predicts {glue:text}`pred_without:.2f` cm. The LOO distance, the change
# in this prediction caused by dropping one chair, is {glue:text}`loo_distance:.2f` cm. The paper
# rounds the first prediction to 95 cm and so reports a distance of 5 cm.

# %%
glue("test_weight", test_weight, display=False)
glue("test_height", test_height, display=False)
glue("pred_full", result.test_prediction_full, display=False)
glue("pred_without", result.test_prediction_without, display=False)
glue("loo_distance", result.loo_distance, display=False)
print(f"prediction for {test_weight} kg: {result.test_prediction_full:.4f} cm (all), "
      f"{result.test_prediction_without:.4f} cm (without chair {leave_out}); "
      f"LOO distance {result.loo_distance:.4f} cm")

# %% [markdown]
# ## Cook's distance
#
# Cook's distance of chair $i$ compares the fitted values of all $n$ chairs with and without it,
#
# $$
# D_i = \frac{\sum_{j=1}^{n} \left(\hat y_j - \hat y_{j(i)}\right)^2}{p\, s^2},
# \qquad s^2 = \frac{1}{n - p} \sum_{j=1}^{n} \left(y_j - \hat y_j\right)^2,
# $$
#
# where $p = 2$ counts the fitted coefficients (slope and intercept) and $s^2$ is the residual mean
# square of the full fit. For these chairs $s^2$ is {glue:text}`mse:.2f` cm², and the light chair's
# distance is {glue:text}`cook_light:.1f`, far above the usual rule of thumb of 1; the other chairs
# stay below {glue:text}`cook_others_max:.2f`.
#
# The paper's own arithmetic lands at "about 1". That number comes from a shortcut: it puts the
# single squared change of the test chair's prediction, $5^2$, over an unstated error term. The
# definition instead sums over the *fitted* chairs, and dropping the light chair moves every fitted
# value, the light chair's own most of all (from {glue:text}`fit_light_full:.1f` cm to
# {glue:text}`fit_light_without:.1f` cm). Even the shortcut with this fit's $s^2$ gives
# {glue:text}`cook_shortcut:.2f` with $p = 2$, or {glue:text}`cook_shortcut_f1:.2f` if $p$ is read as
# the single feature (weight). The conclusion does not change, only its size: the light chair
# dominates the fit.

# %%
mse = toys.residual_mean_square(np.array(chairs))
cook = result.cooks_distance
others = np.delete(cook, leave_out)
glue("mse", mse, display=False)
glue("cook_light", float(cook[leave_out]), display=False)
glue("cook_others_max", float(others.max()), display=False)
glue("fit_light_full", float(result.full.predict(chairs[leave_out][0])), display=False)
glue("fit_light_without", float(result.without.predict(chairs[leave_out][0])), display=False)
glue("cook_shortcut", float(result.loo_distance**2 / (2 * mse)), display=False)
glue("cook_shortcut_f1", float(result.loo_distance**2 / mse), display=False)
for i, (chair, d) in enumerate(zip(chairs, cook)):
    print(f"chair {i} ({chair[0]:g} kg, {chair[1]:g} cm): Cook's distance {d:.4f}")

# %% [markdown]
# {numref}`fig-chairs` shows the two fits. The light chair pulls the full fit's line down at the
# left end and flattens it; without it the line passes exactly through the three heavy chairs and
# through the test chair.
#
# ```{glue:figure} fig_chairs
# :name: fig-chairs
#
# The four chairs, the least-squares line with and without the light chair, and the test chair.
# ```

# %%
fig = plots.chair_fits(np.array(chairs), result, leave_out=leave_out,
                       test_point=(test_weight, test_height))
glue("fig_chairs", fig, display=False)
plt.close(fig)
