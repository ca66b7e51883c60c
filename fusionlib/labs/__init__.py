"""Course labs: student versions of the paper notebooks and the checks that grade their exercises.

``make labs`` (``python -m fusionlib.labs``) writes ``labs/<notebook>_student.ipynb``; see
``fusionlib.labs.student`` for how a notebook marks an exercise and ``fusionlib.labs.check`` for the
check a student runs.
"""

from fusionlib.labs.check import (
    LabCheckError,
    check_exercise,
    describe_difference,
    encode_cell,
    reveal,
    set_student_mode,
    student_mode,
    swap_modules,
    whose,
)
from fusionlib.labs.student import (
    Exercise,
    exercise_source,
    find_exercises,
    make_student_notebook,
    parse_exercise_line,
    revealed_by,
    write_labs,
)

__all__ = ["LabCheckError", "check_exercise", "describe_difference", "encode_cell", "reveal", "set_student_mode",
           "student_mode", "swap_modules", "whose", "Exercise", "exercise_source", "find_exercises",
           "make_student_notebook", "parse_exercise_line", "revealed_by", "write_labs"]
