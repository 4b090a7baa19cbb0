"""Massage-therapy safety (brief MASS-1; seed 002; card C-MASSAGE-SAFETY).

Rule to write here (order-select/order-sign, drafts with kind == "massage"):
warning for osteoporosis/osteopenia; critical for any fracture within
settings.fresh_fracture_weeks. Modifiers in the text: record.anticoagulant,
record.long_term_corticosteroid, record.fragile_skin (seed 002).
"""
