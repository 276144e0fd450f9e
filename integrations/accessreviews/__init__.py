"""Access reviews (README "Access reviews"): scheduling, the contact's
private page, staff alerts and enforcement. ``flows`` holds the named
functions every path calls (the schedule, the admin action, the API, the
page); ``views`` the public page; ``tasks`` the beat entry."""
