"""Melody: picked from a song, simplified to what a person plays, mapped to five buttons.

A thin wrapper over the melody kernels (``_kernels.melody_pick`` chooses the notes, ``_kernels.melody``
puts them on the step grid).

How ``melody_notes`` picks the melody (``_kernels.melody_pick.pick_melody``, one kernel call)
----------------------------------------------------------------------------------------------
1. Drums are dropped; the other notes go onto the 16th grid.
2. Track choice: each (track, channel) group is scored by its note count, cut hard for
   notes that start on the same step or under a sounding note of the group. Where the best
   group is monophonic (at most ``_MONO_LIMIT`` of such notes) and there are two groups or
   more, its notes are the melody; in a segment of ``_SEGMENT_STEP`` steps where it is
   silent, the best other monophonic group that plays there stands in. Track names,
   programs and velocities are not used (names are often wrong in real files).
3. Otherwise (one merged track, or only chordal tracks) every pitched note is a candidate.
   When the velocities are flat (standard deviation at most ``_FLAT_VELOCITY``) and the
   candidates' skyline (highest onset per step) moves smoothly, at most ``_CLEAN_LEAP``
   semitones per note on average, the input is a clean top line over an accompaniment
   (folk tune with chords, chorale) and the skyline is the melody.
4. Else each note gets 31 features from the notes alone (``_kernels.melody_features.FEATURE_NAMES``:
   height in its onset group and among the sounding notes, duration, onsets under it,
   register against the local upper line and the song, intervals to the neighbouring
   onsets, velocity against its onset group, its neighbours and the song, beat position).
   A small network (``_NET1``: 16 ReLU units) turns them into a melody probability; 22
   context features then say how the note fits the probable melody around it (its
   pitch and velocity against the likely line near and wide, the likely notes before,
   after and still sounding; ``CONTEXT_NAMES``), and a second network (``_NET2``) scores
   the note on all 53. The same context again, now from the second pass's sharper line,
   and 7 segment features (``SEGMENT_NAMES``: bars from the song's start and to its end,
   how dense the likely line is around the note against the whole song, how often two
   likely notes start together) make 82 inputs per note. Both networks were fitted on
   POP909 001-300 with bench/fit_melody.py, on each song as it is and with its track
   velocities pulled together (later POP909 songs play every track at one level).
   Two stacked bidirectional GRU layers over all the notes in onset order (``_LINE``,
   ``_kernels.melody_nets.line_logits``, float32 weights in ``models/melody_line.npz``) turn
   those inputs into the final score: three such networks, two of 128 units each way
   (seeds 0 and 1) and one of 160, their logits averaged (``ensemble_line_logits``; 0.893,
   0.891 and 0.891 alone, 0.900 together, at about 3.5 times the cost of one of 128). Each onset's notes
   go in from the highest pitch down (``pitch_onset_order``), never in the file's order:
   a merged file still lists one instrument's notes before another's at each onset, and
   a GRU fitted on that order learns the order, not the music (one did: 0.87 on the held-out songs, 0.75 once
   the notes of each onset were shuffled). The GRU sees the whole song, so it can tell
   the sung parts from intros, interludes and a counter-melody above the voice: on
   held-out POP909 songs it reads F1 0.900 with all three tracks merged and 0.975 with
   MELODY+PIANO merged (docs/measurements.md; one layer of 32 units read 0.83 and 0.95). It was
   fitted with torch on every POP909 song but the held-out ones, 301-909 divisible by 3
   (bench/fit_melody_line.py), with note-network inputs from networks that had not seen
   the song.
   A causal greedy line takes per onset step the best-scored note if its score is
   positive.
5. Chosen notes that overlap the next chosen note are cut at its onset.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from chiptuner._kernels import melody as _k
from chiptuner._kernels.melody_pick import pick_melody, skyline
from chiptuner.errors import ParameterError
from chiptuner.timebase import STEPS_PER_BEAT, quantize_notes
from chiptuner.types import Melody, Notes, Score

__all__ = [
    "melody_notes",
    "skyline_notes",
    "extract_melody",
    "melody_from_notes",
    "simplify",
    "to_buttons",
    "MaxOnsets",
    "N_LANES",
]

logger = logging.getLogger(__name__)

MaxOnsets = Literal["beat", "half_beat"]

#: Number of button lanes of ``to_buttons``.
N_LANES = 5

#: The two note networks of ``_kernels.melody_pick.pick_melody`` (hidden weights, one
#: row per unit; hidden biases, output weights, output bias), fitted on POP909 001-300 only.
# fitted by bench/fit_melody.py --write on POP909 001-300; do not edit by hand
_NET1 = (
    np.array([
        0, 0.26441, -0.092172, -0.027315, -0.21014, 0.18842, -0.75951, 0.1085,
        0.45775, 0.011725, 0.0591, 0.066128, -0.40563, 0.020476, 0.069953, 4.0225,
        -0.16862, -0.062645, 0.34914, -0.078445, -0.14166, -0.64985, -0.15126, -0.088359,
        -0.041068, -0.14682, -0.025466, -0.085852, 0.13225, 0.18691, -0.21086, 0,
        -0.9932, 0.11375, -0.57415, 0.044142, 0.78316, 0.077905, -0.048368, -0.28963,
        -0.37558, 0.019993, 0.53976, 0.54517, 0.10656, 2.8927, -0.53118, 0.056813,
        0.15215, 0.36232, -0.40936, -0.32915, -0.45649, -0.56815, 0.035126, 0.2027,
        0.13667, -0.22984, 0.43856, 1.1078, 0.14766, -0.027667, 0, -1.2196,
        -0.56611, -1.076, 0.56437, -0.89642, 0.090094, -0.43577, -0.98927, 0.27458,
        -0.044568, 0.40743, -0.38959, -0.24813, 0.19102, -0.27888, 0.063307, -0.29405,
        -0.055797, -0.24099, -0.30014, 0.098701, -0.62738, -0.23315, -0.079674, -1.2183,
        0.083243, 0.14099, -1.2246, -0.12816, -0.85573, 0, 0.57847, 0.44497,
        -0.47622, -0.49735, 0.086625, -2.5838, 0.08965, -0.53783, 0.54224, 0.010824,
        -0.18976, -0.48756, -0.49135, -0.6503, -1.5278, -0.021598, 0.094084, 0.21414,
        0.37398, 0.24621, -0.28327, -0.41794, 0.13932, -0.18366, -0.11021, 0.37499,
        -0.054952, -0.63802, -0.082553, -0.080295, 0, 0.82522, 0.62276, 0.62914,
        -0.15129, 0.29314, -0.061247, -0.42971, -0.61003, -0.33593, 0.1177, 0.043581,
        -0.87574, 0.63664, 0.52045, 0.6327, -0.41383, 0.097778, -0.32509, -0.39107,
        -0.026711, 0.5214, -0.28207, 0.10062, 0.13486, 0.79318, -0.18023, -0.08066,
        -0.88395, -0.038496, 0.52581, 0, 0.46924, -0.05636, -0.18807, -0.29221,
        -0.22029, 1.2049, 0.11476, -0.22884, -0.0051101, -0.24238, 0.32473, 0.094083,
        -0.42264, 1.3468, 1.0369, -0.65793, 0.11311, -0.12407, 0.78703, 1.3747,
        -1.4245, 0.29416, 0.08979, -0.09677, -0.33659, -0.29213, -0.36694, -1.4536,
        -0.98454, 0.28372, 0, -0.84817, -0.66595, -0.052873, 0.38553, -0.11841,
        0.22127, 0.21618, 0.28469, -0.39836, -0.35722, -0.16875, -0.1296, -0.074082,
        -2.0701, -0.17637, -0.25439, -0.17206, -0.20237, -0.1489, -0.61099, -0.022994,
        -0.11559, 0.090951, -0.015472, 0.063394, 0.37153, -0.11307, -0.35136, 0.021995,
        -0.49139, 0, -0.093598, -0.2959, -0.25426, 0.041101, 0.19154, -0.83548,
        0.051645, 0.2745, 0.68266, -0.020965, 0.26334, -0.12251, 0.10596, -1.317,
        -1.9954, 0.16377, 0.13564, -0.2421, -0.53718, -0.47122, -0.36304, -0.20196,
        0.012617, 0.087603, -0.28592, -0.1281, -0.42598, -0.49561, 0.59954, -0.41465,
        0, -0.37377, 0.69744, 0.28592, -0.20449, -0.20342, 0.48366, -0.085212,
        -0.087678, -0.056637, 0.032962, 0.60231, 0.28583, -1.778, 0.54329, 0.53063,
        0.4364, -0.0078768, -0.32177, -0.4434, -0.009284, 0.21961, -0.22179, -0.060819,
        0.14029, -0.6414, 0.05858, 0.14826, 4.1253, 0.2702, 0.44872, 0,
        0.037078, -0.79169, 0.52649, -0.50868, -0.60814, -0.50869, -0.18812, -0.39353,
        0.033609, -0.022662, 0.16451, 0.43104, -0.16104, 0.073325, -0.37385, 1.3467,
        -0.020314, -0.12414, -0.62284, -0.38179, -0.19622, 0.82026, -0.038415, 0.23626,
        -0.43241, 0.21138, 0.09948, -0.75663, -0.21836, -0.094265, 0, -1.0054,
        -0.44028, 0.73182, -0.84301, -0.14664, -0.17656, 0.24497, 0.10407, 0.2687,
        -0.10439, 0.071248, 0.622, 0.26463, 0.23678, 0.22933, -0.13117, -0.046778,
        -0.071637, -0.18417, -0.39732, -0.071787, 0.77897, -0.052682, 0.020229, -0.48931,
        0.094859, 0.048841, -0.080771, 0.065533, 0.19876, 0, -0.26529, -0.032214,
        -0.36469, -0.55883, -0.20815, -1.676, 0.086723, 0.23088, -0.22683, 0.065731,
        -0.46463, 0.10305, 0.18421, -0.24485, -0.32275, -0.57329, -0.49253, 0.67156,
        0.51032, 0.2908, -0.65098, 0.69052, -0.096772, 0.096948, -0.13746, -0.38209,
        -0.32962, 0.95012, 0.14556, -0.23429, 0, -0.39552, -0.21282, 0.31593,
        -0.84937, -0.4039, -2.9312, 0.12377, -0.30945, 0.10627, -0.021494, 0.10609,
        0.33859, -0.23378, -0.018203, -0.057878, -0.18458, -0.035967, 0.30732, 0.088435,
        -0.26411, -0.37108, 0.83111, -0.022526, -0.028179, -0.64818, 0.046235, 0.057767,
        0.69603, 0.013865, -0.19027, 0, -0.44071, -0.11199, 0.44964, -0.46733,
        -0.025952, 0.69755, -0.24984, -0.58261, -0.049884, -0.10916, 0.29176, -0.103,
        -0.10412, 0.31089, 0.57199, 0.23787, 0.047564, 0.84393, 0.74592, 0.11873,
        -1.3857, 0.5022, 0.048017, -0.18265, -0.58994, -0.10904, 0.095058, 1.2736,
        0.65768, 0.79052, 0, -0.81274, -0.74489, 0.32452, -0.21635, -0.56286,
        0.44224, 0.25966, -0.12765, -0.24361, 0.13468, -0.014914, 0.4864, 0.29188,
        0.54998, 0.93447, 0.32391, -0.055079, 0.18939, 1.3227, 0.70421, 1.2193,
        0.48217, 0.074375, 0.26926, 0.25743, -0.53948, -0.19568, -0.61855, 0.24902,
        -0.1278, 0, -0.016891, -0.32793, -0.23784, 0.037848, -3.4139, -0.96462,
        0.022479, 0.30013, 0.11069, -0.052706, -0.43997, 0.24775, 0.58952, 0.24036,
        0.027535, 0.63229, -0.036342, -0.25909, 0.22829, -0.49621, -0.70772, -0.23317,
        -0.05939, 0.034192, 0.24512, 0.11292, 0.27389, 1.9289, 0.084394, -0.042241,
    ]).reshape(16, 31),
    np.array([
        -1.7804, -0.88833, 2.9593, 2.0029, 0.25655, 1.1844, 3.0865, 2.2429,
        -5.7192, -0.13812, 1.3604, 3.0152, 1.8257, -1.0648, 0.75757, -1.1875,
    ]),
    np.array([
        0.92991, 0.78369, 1.1999, 0.63668, -1.1198, -0.72355, 0.42768, 0.51167,
        -0.68657, -0.92451, -2.3448, 0.62177, -1.9835, -1.3086, 0.57978, 0.67265,
    ]),
    -0.85683,
)  # fmt: skip
_NET2 = (
    np.array([
        0, 0.36521, 0.1541, -0.037276, 0.13367, -0.12682, -1.0457, 0.0085503,
        -0.046401, 0.10185, -0.13433, 0.04615, -0.19961, 0.77459, -0.12286, 0.2465,
        0.034933, 0.32806, 0.12508, -0.20288, 0.38042, -0.16732, -0.16516, 0.025932,
        0.014479, 0.8589, 0.064977, 0.025464, 0.20321, 0.26139, -0.08575, 0.77104,
        -0.28375, -0.34994, -0.3041, -0.30476, -0.4417, -0.099643, 0.015483, 0.063023,
        0.18388, -0.39399, 0.02634, -0.73506, -0.12101, 0.13455, -0.33599, 0.26774,
        -0.1075, -0.0134, 3.9187, -0.14638, 0.2567, 0, 0.54842, -0.15009,
        -0.54933, 0.11154, -0.31465, -1.8094, -0.29543, 0.18222, 0.16198, 0.098697,
        -0.23506, 0.59542, 0.58448, -0.16824, 0.24232, -0.12858, -0.22368, -0.10318,
        -0.14266, -0.50368, 0.2469, -0.23416, 0.070391, -0.096324, 0.48996, 0.20051,
        0.082967, -0.89692, -0.4237, -0.050596, -0.30125, -0.65728, -0.27029, -0.46969,
        -0.056228, 0.82624, -0.23367, -0.04781, -0.192, -0.062614, -0.95968, 0.062241,
        -0.60494, 0.11399, -0.10539, 0.31544, 0.86439, -0.039939, -0.32308, -10.668,
        0.018756, 0.0067759, 0, -1.1493, 0.079791, -0.83645, 0.39704, -0.027245,
        1.1019, -0.15431, -0.48657, 0.024578, -0.097457, -0.039993, 0.0078483, -0.037054,
        0.041805, -0.021911, -0.085477, 0.17587, -0.50011, -0.32659, -0.12989, 0.27544,
        -0.52722, -0.054167, -0.38681, -0.24053, -0.079792, 0.0065899, -0.33211, -0.16578,
        0.29367, 2.193, -0.99531, -0.1416, 0.27706, 0.2902, -0.24772, -0.092676,
        0.24263, -0.071903, -0.18411, -0.099293, -0.26295, 0.26545, -0.045687, 0.11458,
        -0.5653, 0.098621, -0.09564, -1.0832, -1.314, 0.1329, 0.57458, 0,
        -0.12381, -0.083649, -0.27253, 0.080411, 0.21573, 0.053105, 0.026237, 0.057756,
        0.14195, 0.06395, 0.23862, 0.33273, 0.28055, 0.17122, -2.0727, -0.17162,
        -0.24281, 0.24692, -0.18142, -0.028078, 0.026969, -0.23037, -0.013703, 0.19273,
        0.094136, -0.095984, -0.047741, 0.020023, -0.30591, -0.098681, -1.5577, 0.26922,
        -0.45692, 0.18913, 0.14414, -0.14857, -1.307, 1.9576, 0.043497, -0.14774,
        0.85185, 0.057492, -0.2206, -0.20919, -0.06205, 0.047154, 0.15014, 0.33372,
        -0.10276, -0.97477, 0.32286, 0.11153, 0, 0.36646, 0.16755, 0.27191,
        -0.27204, -0.37561, 0.19389, 0.66932, 0.57644, 0.32214, -0.12143, -0.11554,
        -0.79085, 0.096384, 0.58425, -0.18802, -0.16642, -0.044053, 0.10073, 0.24835,
        -0.28415, 0.12143, 0.35927, 0.14723, -0.14803, 0.073122, -0.065333, -0.047886,
        -2.1499, -0.11124, -0.67517, -1.6821, 0.5272, 0.077493, 0.62192, -0.47196,
        0.32577, -0.0097065, -0.60274, -0.018151, -0.040284, 1.6807, 0.1525, -0.23916,
        -0.25336, -0.37072, -0.26954, 0.079878, 1.5275, -0.31338, 0.16232, 0.25511,
        -0.56694, 0, 1.0294, 0.24374, -0.25066, 0.0049114, -0.43487, -0.045718,
        0.13461, -0.40324, 0.14561, 0.055304, -0.30649, -0.38855, -0.82545, -0.64395,
        -0.56324, 0.43646, -0.16157, -0.13785, -0.21941, -0.23005, -0.43028, -0.008936,
        -0.058262, -0.082209, -0.31952, -0.045548, 0.023863, 0.19806, -0.22635, -0.2929,
        -2.4333, 0.48261, 0.11716, -0.22379, 0.43973, -0.4967, 0.14596, -0.30248,
        -0.0083742, -0.13916, 0.57593, -0.029712, -0.064659, 0.56467, -0.056244, 0.080215,
        0.12678, -0.05919, 0.27469, 3.1696, 0.30526, -0.010255, 0, -0.52578,
        -0.52314, 0.8413, -0.83217, -0.060135, -0.48217, 0.16839, 0.43481, 0.31131,
        -0.13818, -0.139, 0.28403, 0.26973, 0.3712, -0.39534, 0.03639, -0.069648,
        -0.22279, 0.30251, -0.32657, -0.017915, 0.78882, -0.0083121, -0.023436, 0.19954,
        0.1988, 0.14486, -0.63179, 0.2716, -0.10711, -0.74757, -0.93251, 0.4105,
        -0.36567, 0.099906, -0.37202, 0.036578, -0.11824, 0.018907, 0.1138, 0.30639,
        -0.0083045, -0.3552, -0.051975, -0.024429, -0.071682, 0.052455, 0.4147, -0.7704,
        -0.085081, -0.08757, 0.39449, 0, 0.033052, -0.033846, 0.052933, -0.2697,
        0.068458, 0.4106, -0.22999, -0.22242, 0.011252, 0.010001, -0.64226, 0.1859,
        0.27456, 0.20016, -0.24495, 0.51447, 0.15759, 0.15374, 0.56201, -0.113,
        0.11703, 0.63816, -0.11566, -0.29842, 0.12329, 0.09809, -0.16088, 0.57525,
        0.30692, 0.017484, -0.84999, 0.13247, 0.78629, -0.12415, -0.060977, -0.23661,
        -0.10266, 0.13028, 0.086386, 1.4478, 1.6724, 0.5306, 0.5156, -0.41193,
        0.52239, -0.83175, -0.074408, -1.3059, 1.1024, 0.69978, -1.0449, 0.15571,
        0, 0.69625, 0.15506, 0.29451, -0.015078, 0.08333, -0.10627, -0.29678,
        -0.5164, 0.099806, -0.035141, 0.15856, -0.27942, -0.25109, 0.14056, 0.2361,
        0.92822, -0.0091199, 0.66683, 0.3488, -0.041114, -0.87418, 0.0063909, -0.14687,
        0.14907, -0.24443, 0.061818, 0.1338, 0.69021, 0.36711, 0.49467, 0.3786,
        -0.004498, 0.42863, 0.53104, -0.18432, 0.19737, -0.038119, 0.2627, -0.043599,
        0.17813, 0.36341, 0.04689, -1.0101, 0.44234, 0.54892, -0.45196, -0.55739,
        -1.0474, -0.090838, 3.7456, 0.47323, -0.028284, 0, -0.1606, 0.45785,
        0.63172, -0.30693, 0.068246, -0.0049862, -0.33446, -0.16753, -0.25081, 0.054203,
        0.081857, -0.22905, 0.072818, 0.11786, -0.054946, -0.59937, 0.064329, -0.40852,
        -0.30111, -0.022883, 0.62326, 0.24036, 0.094619, -0.11071, -0.16409, -0.11131,
        -0.26821, 0.9928, -0.16844, 0.12382, -0.24708, -0.013278, -0.26232, 1.0849,
        -0.33189, 0.061995, 0.1019, -0.04382, 0.068531, 0.13579, -0.086079, -0.090172,
        0.73772, 0.17582, 0.30696, -0.087341, 0.38032, 0.22255, -0.10461, 2.8529,
        -0.10877, 0.33001, 0, 0.42843, -0.39677, 0.08601, -0.3581, 0.046842,
        0.34238, -0.35926, -0.11425, -0.018249, 0.010991, -0.36297, 0.43772, 0.91057,
        0.058239, 0.23235, -0.18644, 0.055945, -0.21343, -0.40146, -0.097496, -0.01091,
        0.4682, -0.0091041, -0.13408, 0.31993, -0.14086, -0.12255, -1.6441, -0.30419,
        0.22239, -1.6395, 2.1836, -0.056557, 0.27831, 0.25911, 0.042874, 0.071275,
        0.12815, 0.14159, 0.084176, -0.11403, 0.038648, -0.65408, 0.028802, -0.034867,
        0.1688, -0.14607, 0.30345, 0.011382, -1.4951, 0.10349, 0.2088, 0,
        0.063186, -0.44857, 0.089481, -0.4486, -0.2297, 0.54996, 0.55987, 0.1746,
        -0.25701, -0.11951, 0.21833, 0.65237, 0.11686, -0.091361, 0.17062, 0.1263,
        0.18177, 0.12613, 0.063666, 0.22508, -0.084283, 0.53003, -0.047326, -0.023955,
        0.42234, -0.069513, -0.035398, -1.7595, -0.028605, 0.30266, 0.38717, -0.044339,
        -0.29302, 0.15858, 0.17956, -1.4654, -0.11715, -0.13669, 0.028501, -0.45083,
        0.27589, -0.066376, -0.84663, -0.10145, 0.070748, 0.42531, -0.010043, 0.00080684,
        -0.059859, -1.1877, -0.66725, 0.47447, 0, 0.05513, -0.37831, 0.24414,
        -0.62578, -0.27409, -0.34183, -0.1346, -0.20878, 0.078737, -0.022304, 0.29037,
        0.36456, -0.13062, -0.72822, 0.25025, -0.14872, -0.041705, -0.46616, -0.46008,
        -0.085403, 0.19347, 0.56101, -0.034052, 0.069035, 0.33455, 0.023502, 0.12325,
        -0.35786, -0.26978, -0.66748, -0.35421, -0.61824, -0.52926, 0.15079, 0.085501,
        0.16756, -0.24786, 0.23957, -0.07431, 0.026654, 0.24579, -0.075115, -0.64006,
        0.52095, 0.20953, -0.047622, 1.4187, -0.15994, -1.5207, -3.1968, 0.74364,
        0.53311, 0, 0.44517, 0.65417, 0.65629, -0.50367, -0.33194, -0.17999,
        -0.29824, -0.94042, -0.19668, -0.0036656, 0.09546, -0.35606, 0.32355, 0.37272,
        0.16704, -0.48852, 0.053715, 0.073457, -0.15073, 0.11588, -0.19258, 0.48738,
        0.075189, 0.1771, 0.3887, 0.036832, -0.075282, -1.9002, 0.0069137, -0.21667,
        0.36102, -0.73763, -0.76375, 0.28985, 0.52012, 0.87249, 0.05413, 0.53055,
        -0.070896, -0.0074617, -0.62798, 0.058375, -0.34339, -0.12984, -0.23739, 0.8837,
        -0.80334, 0.10248, 1.2571, -3.1958, 0.43413, -0.96586, 0, -0.26014,
        -0.11777, 0.29495, 0.005857, -0.21682, -0.12772, 0.4058, -0.041922, -0.24826,
        -0.40493, -0.01053, 0.02615, 0.11389, 0.3388, -0.15165, -0.60725, -0.69338,
        0.13768, -0.047335, -0.087218, 0.43308, 0.24403, -0.0052479, 0.025021, 0.57074,
        0.14576, -0.13371, -0.25302, -0.46313, -0.26341, -1.2019, 0.57685, -0.021011,
        0.41271, -0.10175, -0.43222, -0.054753, 0.026176, -1.2504, 2.3578, 0.22102,
        0.066863, -0.23787, -0.00094964, -0.10102, -0.10805, -0.088966, 0.5657, -0.16469,
        -0.11909, -0.067179, 0.28165, 0, -0.42313, -0.64637, -0.062166, -0.18202,
        0.20542, -0.62792, 0.49478, -0.32142, 0.0023564, -0.045212, 0.62007, -0.023037,
        -0.28583, 0.068537, 0.11855, -0.11964, 0.011072, 1.31, 0.9875, 0.93162,
        0.6175, 0.31255, 0.034734, 0.10791, -0.53542, -0.010762, -0.035454, 0.34175,
        1.2908, 0.039477, -0.18515, 0.85016, 0.19653, -0.34642, -0.53309, 0.44695,
        -0.063586, 0.22397, 0.083202, -0.44942, -0.10242, 0.16114, 0.19424, -0.057923,
        -0.16894, -0.17259, 0.067617, 0.37834, -1.2828, -0.11578, -0.20168, -0.88662,
    ]).reshape(16, 53),
    np.array([
        -3.9385, 6.8847, 2.5637, 1.1265, -0.26496, 0.2626, 1.1206, 1.2946,
        -6.2016, -1.5404, 1.2985, 2.248, 3.3345, 1.2972, 0.90493, 0.46987,
    ]),
    np.array([
        0.93443, 0.87271, 0.87876, 0.7303, -1.2189, 0.84356, -1.6707, -0.7022,
        -1.2928, -1.3836, 1.8929, -1.4609, -1.5077, -1.0865, 0.93625, 0.69175,
    ]),
    -0.14534,
)  # fmt: skip
# end of fitted block


#: Where ``load_line_net`` reads the line networks (bench/fit_melody_line.py writes them).
LINE_NET_PATH = Path(__file__).parent / "models" / "melody_line.npz"
#: The arrays of one group of ``_kernels.melody_nets.ensemble_line_logits`` (``line_logits``' argument order).
LINE_NET_KEYS = ("w_in", "b_in", "w_ih_first", "w_ih_upper", "w_hh", "b_ih", "b_hh", "w_out", "b_out")


def load_line_net(path: Path = LINE_NET_PATH) -> tuple:
    """The line networks: a tuple of groups, one per width, as ``ensemble_line_logits`` takes them.

    The file holds each width's networks stacked under ``{key}.{width}`` (``LINE_NET_KEYS``;
    bench/fit_melody_line.py's ``save_networks``). A group is its arrays in ``LINE_NET_KEYS``
    order, one leading axis for the networks: float32, the type the file stores
    (``line_logits`` runs its GRU in the weights' type, 1.35x faster than in float64 with
    the same choices on the held-out songs), ``b_out`` float64 (K,). Narrowest first.
    """
    with np.load(path) as f:
        widths = sorted(int(name.split(".")[1]) for name in f.files if name.startswith("b_out."))
        if not widths:
            raise ValueError(f"{path} holds no line networks (no b_out.WIDTH array): write it with save_networks")
        return tuple(
            (
                *[np.ascontiguousarray(f[f"{key}.{width}"], dtype=np.float32) for key in LINE_NET_KEYS[:-1]],
                np.asarray(f[f"b_out.{width}"], dtype=np.float64),
            )
            for width in widths
        )


_LINE = load_line_net()

#: Greedy line: cost per semitone of leap from the last chosen note, and how far back
#: (steps) that note still counts.
_LEAP_COST = 0.0
_WINDOW_STEP = 16
#: Track choice: penalty per unit of chordal fraction, the largest chordal fraction of a
#: melody track, and the segment length (steps, 8 bars of 4/4) of the stand-in rule.
_MONO_PENALTY = 16.0
_MONO_LIMIT = 0.05
_SEGMENT_STEP = 128
#: Mean skyline leap (semitones) up to which a merged input with flat velocities
#: (standard deviation at most ``_FLAT_VELOCITY``) counts as a clean top line. Where the
#: velocities vary the networks always decide: they read velocity, and on POP909 001-300
#: (validation) any leap gate there loses F1 (0.916 without, 0.904 at 3 semitones).
_CLEAN_LEAP = 4.0
_FLAT_VELOCITY = 2.0
#: First-pass melody probability under which a note is not scored by the second network.
_SECOND_MIN_Q = 0.05
#: A choice keeping under this share of the pitched notes, where the skyline keeps three
#: times as many, is replaced by the skyline (pop songs keep 14-30%).
_FALLBACK_SHARE = 0.08
#: Silence (steps) after which ``to_buttons`` puts the next note back on the middle lane.
_RECENTER_BEATS = 2


def melody_notes(score: Score) -> Notes:
    """Pick the melody line of a song: a monophonic subset of its notes.

    See the module docstring for the method. Works on files with the melody on its own
    track (names not needed) and on files with every part merged into one track and channel.

    Parameters
    ----------
    score : Score

    Returns
    -------
    notes : Notes
        New arrays, sorted by ``start_tick``, at most one note per 16th step, none
        overlapping the next (a note is cut at the next chosen onset). Never a drum note.
        Where the choice keeps under 8% of the pitched notes and ``skyline_notes`` keeps
        three times as many, the skyline is returned instead.
    """
    notes = score.notes
    start_step = np.empty(len(notes), dtype=np.int64)
    end_step = np.empty(len(notes), dtype=np.int64)
    _k.grid_steps(notes.start_tick, notes.end_tick, score.ticks_per_beat, STEPS_PER_BEAT, start_step, end_step)
    return _melody_notes(score, start_step, end_step)


def _melody_notes(score: Score, start_step: np.ndarray, end_step: np.ndarray) -> Notes:
    """``melody_notes`` given the notes' 16th-grid steps (``_kernels.melody.grid_steps``)."""
    notes = score.notes
    n = len(notes)
    out = (
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int8),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.bool_),
    )
    k = pick_melody(
        notes.start_tick, notes.end_tick, start_step, end_step, notes.pitch, notes.velocity, notes.channel,
        notes.program, notes.track, notes.is_drum, _NET1, _NET2, _LINE, _LEAP_COST, _WINDOW_STEP,
        _MONO_PENALTY, _MONO_LIMIT, _SEGMENT_STEP, _CLEAN_LEAP, _FLAT_VELOCITY, _SECOND_MIN_Q, *out,
    )  # fmt: skip
    if k < _FALLBACK_SHARE * n:
        # Track choice and note scorer were fitted on pop songs; where they keep almost
        # nothing (3% of the NES corpus), the plain skyline is the better melody.
        n_pitched = int(n - np.count_nonzero(notes.is_drum))
        if k < _FALLBACK_SHARE * n_pitched:
            skyline = skyline_notes(score)
            if len(skyline) > 3 * k:
                return skyline
    # the kernel's fresh outputs, cut to the chosen notes: no checks needed
    return Notes._adopt(*[array[:k] for array in out])


def skyline_notes(score: Score) -> Notes:
    """Pick the skyline baseline: per 16th step the highest starting note.

    A note is skipped while a higher chosen note still sounds. Drums are ignored;
    overlaps are cut as in ``melody_notes``.

    Returns
    -------
    notes : Notes
    """
    notes = score.notes
    start_step, end_step = quantize_notes(notes, score.ticks_per_beat, steps_per_beat=STEPS_PER_BEAT)
    order = np.lexsort((-notes.pitch.astype(np.int64), notes.start_tick, start_step))
    order = order[~notes.is_drum[order]]
    keep = np.zeros(len(order), dtype=np.bool_)
    skyline(start_step[order], end_step[order], notes.pitch[order], keep)
    chosen = notes.take(order[keep])
    end_tick = chosen.end_tick.copy()
    if len(end_tick) > 1:
        end_tick[:-1] = np.minimum(end_tick[:-1], chosen.start_tick[1:])
    return Notes(
        chosen.start_tick, end_tick, chosen.pitch, chosen.velocity, chosen.channel, chosen.program,
        chosen.track, chosen.is_drum,
    )  # fmt: skip


def _check_steps_per_beat(steps_per_beat: int) -> None:
    if not isinstance(steps_per_beat, (int, np.integer)) or steps_per_beat <= 0:
        raise ParameterError(f"steps_per_beat is {steps_per_beat!r}; it must be a positive integer such as 4")


def melody_from_notes(
    notes: Notes, ticks_per_beat: int, n_steps: int | None = None, *, steps_per_beat: int = STEPS_PER_BEAT
) -> Melody:
    """Put monophonic melody notes (as from ``melody_notes``) onto the step grid.

    Parameters
    ----------
    notes : Notes
        Sorted by ``start_tick``; a later note overwrites an earlier one where they overlap.
    ticks_per_beat : int
    n_steps : int or None
        Length T of the result; None: the last release step of the notes.
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,).
    """
    _check_steps_per_beat(steps_per_beat)
    if not isinstance(ticks_per_beat, (int, np.integer)) or ticks_per_beat <= 0:
        raise ParameterError(f"ticks_per_beat is {ticks_per_beat!r}; it must be a positive integer such as 480")
    if n_steps is not None and n_steps < 0:
        raise ParameterError(f"n_steps is {n_steps!r}; it must be None or a length >= 0")
    start_step = np.empty(len(notes), dtype=np.int64)
    end_step = np.empty(len(notes), dtype=np.int64)
    last_step = _k.grid_steps(notes.start_tick, notes.end_tick, ticks_per_beat, steps_per_beat, start_step, end_step)
    if n_steps is None:
        n_steps = max(int(last_step), 0)
    pitch = np.empty(n_steps, dtype=np.int16)
    onset = np.empty(n_steps, dtype=np.bool_)
    _k.render_line(start_step, end_step, notes.pitch, pitch, onset)
    return Melody._adopt(pitch, onset, steps_per_beat=int(steps_per_beat))


def extract_melody(score: Score, *, steps_per_beat: int = STEPS_PER_BEAT) -> Melody:
    """Extract the melody of a song onto the step grid: ``melody_from_notes(melody_notes(score))``.

    Parameters
    ----------
    score : Score
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,); T is the last
        release step of the melody notes (0 for a song without pitched notes).
    """
    _check_steps_per_beat(steps_per_beat)
    return melody_from_notes(melody_notes(score), score.ticks_per_beat, steps_per_beat=steps_per_beat)


def _window_step(melody: Melody, max_onsets: str) -> int:
    if max_onsets not in get_args(MaxOnsets):
        raise ParameterError(f"max_onsets is {max_onsets!r}; use one of {get_args(MaxOnsets)}")
    spb = melody.steps_per_beat
    if max_onsets == "beat":
        return spb
    if spb % 2:
        raise ParameterError(f"max_onsets={max_onsets!r} needs an even steps_per_beat; this melody has {spb}")
    return spb // 2


def simplify(melody: Melody, *, max_onsets: MaxOnsets = "beat") -> Melody:
    """Thin a melody to what a person would play: at most one onset per beat (or half beat).

    The input is already monophonic (one pitch per step). The grid is cut into aligned
    windows of one beat (``"beat"``) or half a beat (``"half_beat"``). In each window the
    first note start is kept, so a note on the beat always wins; later starts in the
    window are dropped and the kept pitch is held through them until the next kept onset,
    or until the input rests. A note that starts after a rest in an already used window
    is picked up at the next window (with an onset there).

    Causal: the output at step t depends on input steps <= t only (the rule never waits
    for a longer or higher note later in the window), so the same rule runs live.

    Parameters
    ----------
    melody : Melody
    max_onsets : {"beat", "half_beat"}

    Returns
    -------
    Melody
        Same length and ``steps_per_beat``; every pitch comes from the input, rests stay
        rests, at most one onset per window.
    """
    window = _window_step(melody, max_onsets)
    pitch = np.empty(len(melody), dtype=np.int16)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.thin_onsets(melody.pitch, melody.onset, window, pitch, onset)
    return Melody._adopt(pitch, onset, steps_per_beat=melody.steps_per_beat)


def to_buttons(melody: Melody) -> tuple[np.ndarray, np.ndarray]:
    """Map a melody's contour to five button lanes, causally.

    Rule: the first note, and the first note after a rest of at least two beats, takes the
    middle lane 2. Every other note moves from the previous note's lane by its interval to
    the previous note: a repeated pitch keeps the lane, 1-4 semitones move one lane, 5 or
    more move two, up for up and down for down, clamped to 0..4 (at the edge a further
    step the same way stays on the edge lane). Held steps keep their lane; rests are -1.
    The lane at step t depends on steps <= t only.

    Worked example (one step per note): C4 D4 E4 E4 G4 C4 = pitches 60 62 64 64 67 60 ->
    lanes 2 3 4 4 4 2 (up 2: +1; up 2: +1; repeat: same; up 3 at the top edge: stays 4;
    down 7: -2).

    Parameters
    ----------
    melody : Melody

    Returns
    -------
    lane : np.ndarray [shape=(T,), dtype=int8]
        0..4, -1 at rests.
    onset : np.ndarray [shape=(T,), dtype=bool]
        True where a note starts (never at a rest).
    """
    lane = np.empty(len(melody), dtype=np.int8)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.button_lanes(melody.pitch, melody.onset, _RECENTER_BEATS * melody.steps_per_beat, lane, onset)
    return lane, onset
