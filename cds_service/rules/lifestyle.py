"""Lifestyle (seed 000; README card C-LIFESTYLE, info, patient-view).

Rule to write here: smoking cessation / limit alcohol when record.smoker or
record.alcohol_excess is True in a patient with osteoporosis, osteopenia or a
fragility fracture. None means "not coded": stay quiet.
"""
