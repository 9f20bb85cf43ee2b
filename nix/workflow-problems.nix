# What a type cannot see: combinations of values and attribute names in the workflows
# and skills of a configuration. `prefix: cfg:` gives a list of messages, each naming
# the option path; nix/module.nix turns them into assertions.
{
  lib,
  namePattern,
  stepOptions,
}:

prefix: cfg:
let
  stepOptionNames = lib.attrNames stepOptions;
  bad = n: builtins.match namePattern n == null;
  at = path: "${prefix}.${path}";
  stepProblems =
    path: s:
    let
      routed = s.route != null || s.capability != null;
    in
    lib.optional (
      !routed && (s.skill == null || s.action == null)
    ) "${at path}: a step needs `skill` and `action`"
    ++ lib.optional (
      routed && (s.skill != null || s.action != null || s.route != null && s.capability != null)
    ) "${at path}: a step needs exactly one of `skill` (with `action`), `route` or `capability`";
  groupProblems =
    path: g:
    let
      set = lib.filter (
        o:
        !(lib.elem o [
          "id"
          "depends_on"
        ])
        && g.${o} != (stepOptionDefaults.${o})
      ) stepOptionNames;
    in
    lib.optional (set != [ ])
      "${at path}: a parallel group sets only `id`, `depends_on` and `parallel`; move ${lib.concatStringsSep ", " set} to its member steps"
    ++ lib.concatLists (lib.imap0 (j: stepProblems "${path}.parallel.${toString j}") g.parallel);
  itemProblems =
    path: i: if i.parallel != null then groupProblems path i else stepProblems path i;
  stepOptionDefaults = lib.mapAttrs (_: o: o.default or null) stepOptions;
in
lib.concatLists (
  lib.mapAttrsToList (
    wn: w:
    lib.optional (bad wn) "${at "workflows.${wn}"}: `${wn}` is not a valid workflow name"
    ++ lib.concatLists (lib.imap0 (j: itemProblems "workflows.${wn}.steps.${toString j}") w.steps)
    ++ lib.concatMap (
      pn: lib.optional (bad pn) "${at "workflows.${wn}.params.${pn}"}: `${pn}` is not a valid param name"
    ) (lib.attrNames w.params)
  ) cfg.workflows
  ++ lib.mapAttrsToList (
    sn: s:
    lib.optional (bad sn) "${at "skills.${sn}"}: `${sn}` is not a valid skill name"
    ++ lib.optional (s.actions == { }) "${at "skills.${sn}.actions"}: a skill needs at least one action"
    ++ lib.concatLists (
      lib.mapAttrsToList (
        an: a:
        lib.optional (bad an) "${at "skills.${sn}.actions.${an}"}: `${an}` is not a valid action name"
        ++ lib.optional ((a.command == null) == (a.http == null))
          "${at "skills.${sn}.actions.${an}"}: set exactly one of `command` and `http`"
      ) s.actions
    )
  ) cfg.skills
)
