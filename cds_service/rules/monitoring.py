"""Monitoring and screening (brief section 5, card family c).

Rules to write here: MON-1 C-MON-DXA-DUE / C-MON-ONTX, MON-2 C-MON-DXA-DUP
(order hooks, drafts kind == "dxa", settings.dxa_duplicate_months), MON-3
C-SCREEN-DXA, MON-4, MON-6 (settings.osteopenia_dxa_years), MON-7
C-LAB-BASELINE (see treatment.missing_baseline_labs), HOLIDAY-1 C-HOLIDAY.
Record fields: dxa_dates / latest_dxa_date, lowest_t, medications, labs.
"""
