"""The worklist: every study read by the right person before its deadline.

Listens to the node's ``study.complete`` events (``jobs``), makes a reading
task with a priority and a deadline (``tasks``), offers or assigns it to
qualified readers on duty (``assignment``), lets one reader hold it at a time
(``claims``), reminds and escalates on the service-level clock (``sla``,
``notify``), asks the province for consults (``consult``), lets supervisors
reassign and reprioritise (``supervision``), and reports turnaround from the
tasks' milestones (``turnaround``) and the live board of open work (``live``).
Who may see and do what is decided in ``access``; the JSON API is ``api``,
described by ``openapi``.
"""
