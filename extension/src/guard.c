/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Keeps custos storage append-only: a statement trigger that refuses
 *	  every write not made by custos' own code, and a utility hook that
 *	  refuses DDL which would switch the trigger off.
 *
 * custos' own code paths (append, seal, and later retention and erasure)
 * bracket their SPI work with GuardBeginInternal()/GuardEndInternal().  That
 * state lives in this backend's memory only, so no SQL, GUC or session
 * variable can fake it.  It also switches to the schema owner's identity so
 * that callers need no privileges on storage at all.
 *
 * What a superuser can still do outside this guard (session_replication_role
 * = replica, which skips triggers; editing data files) is not prevented but
 * detected: custos.verify() recomputes every hash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "custos.h"
#include "guard.h"

PG_FUNCTION_INFO_V1(custos_guard_storage);

ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* nesting depth of custos' own storage access in this backend */
static int	internal_depth = 0;

/*
 * Enter custos' own storage access: lift the guard and run as the schema
 * owner.  SECURITY_RESTRICTED_OPERATION keeps anything that runs meanwhile
 * from changing session state on the owner's behalf.
 */
void
GuardBeginInternal(GuardState *state)
{
	Oid			owner = CustosSchemaOwner();

	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	SetUserIdAndSecContext(owner,
						   state->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	internal_depth++;
}

/* Leave custos' own storage access; safe to call from PG_FINALLY. */
void
GuardEndInternal(GuardState *state)
{
	if (internal_depth > 0)
		internal_depth--;
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

bool
GuardInternalActive(void)
{
	return internal_depth > 0;
}

/*
 * Statement-level BEFORE trigger on every storage table.  A statement
 * trigger costs one call per statement, not per row, which keeps the append
 * path cheap.
 */
Datum
custos_guard_storage(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("custos.guard_storage() must be called as a trigger")));

	if (internal_depth > 0)
		return PointerGetDatum(NULL);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		op = "INSERT";
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else
		op = "TRUNCATE";

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("custos storage is append-only"),
			 errdetail("%s on \"%s.%s\" is refused for every role, superusers included.",
					   op, CUSTOS_SCHEMA, RelationGetRelationName(trigdata->tg_relation)),
			 errhint("Append with custos.log(); retention, anonymisation and erasure have functions of their own.")));
	pg_unreachable();
}

/* Is this RangeVar a relation in the custos schema? */
static bool
is_custos_relation(RangeVar *rv)
{
	Oid			relid;
	Oid			nsp = CustosSchemaOid(true);

	if (rv == NULL || !OidIsValid(nsp))
		return false;
	relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(relid) && get_rel_namespace(relid) == nsp;
}

/* Does an ALTER TABLE touch triggers or row security? */
static bool
alters_protection(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_EnableTrig:
			case AT_EnableAlwaysTrig:
			case AT_EnableReplicaTrig:
			case AT_DisableTrig:
			case AT_EnableTrigAll:
			case AT_DisableTrigAll:
			case AT_EnableTrigUser:
			case AT_DisableTrigUser:
			case AT_DisableRowSecurity:
			case AT_NoForceRowSecurity:
				return true;
			default:
				break;
		}
	}
	return false;
}

static void
refuse(const char *what, RangeVar *rv)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on \"%s.%s\" is not allowed", what, CUSTOS_SCHEMA, rv->relname),
			 errdetail("custos storage keeps its guard triggers for every role."),
			 errhint("DROP EXTENSION custos removes the audit log as a whole; anything that bypasses the guard is detected by custos.verify().")));
}

/*
 * Refuse DDL that would disable, drop or replace the guard triggers, divert
 * writes (rules), move tables out of the schema or change the id sequence
 * (for every role: otherwise a superuser could rewrite the log through plain
 * SQL),
 * and any other DDL on storage by non-superusers.  custos' own install and
 * upgrade scripts are exempt so that upgrades can alter storage.
 */
void
custos_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (!(creating_extension &&
		  CurrentExtensionObject == get_extension_oid("custos", true)) &&
		internal_depth == 0)
	{
		switch (nodeTag(parsetree))
		{
			case T_AlterTableStmt:
				{
					AlterTableStmt *stmt = (AlterTableStmt *) parsetree;

					if (is_custos_relation(stmt->relation) &&
						(alters_protection(stmt) || !superuser()))
						refuse("ALTER TABLE", stmt->relation);
					break;
				}
			case T_CreateTrigStmt:
				{
					CreateTrigStmt *stmt = (CreateTrigStmt *) parsetree;

					if (is_custos_relation(stmt->relation))
						refuse("CREATE TRIGGER", stmt->relation);
					break;
				}
			case T_DropStmt:
				{
					DropStmt   *stmt = (DropStmt *) parsetree;
					ListCell   *lc;

					if (stmt->removeType != OBJECT_TRIGGER &&
						stmt->removeType != OBJECT_RULE &&
						stmt->removeType != OBJECT_POLICY &&
						stmt->removeType != OBJECT_TABLE &&
						stmt->removeType != OBJECT_VIEW &&
						stmt->removeType != OBJECT_INDEX &&
						stmt->removeType != OBJECT_SEQUENCE)
						break;
					foreach(lc, stmt->objects)
					{
						List	   *names = (List *) lfirst(lc);
						RangeVar   *rv;

						/* a trigger's, rule's or policy's name list ends with its own name */
						if (stmt->removeType == OBJECT_TRIGGER ||
							stmt->removeType == OBJECT_RULE ||
							stmt->removeType == OBJECT_POLICY)
							names = list_truncate(list_copy(names), list_length(names) - 1);
						rv = makeRangeVarFromNameList(names);
						if (is_custos_relation(rv))
							refuse("DROP", rv);
					}
					break;
				}
			case T_RenameStmt:
				{
					RenameStmt *stmt = (RenameStmt *) parsetree;

					if (is_custos_relation(stmt->relation))
						refuse("RENAME", stmt->relation);
					break;
				}
			case T_AlterObjectSchemaStmt:
				{
					/* moving a table out of the schema would escape this hook */
					AlterObjectSchemaStmt *stmt = (AlterObjectSchemaStmt *) parsetree;

					if (is_custos_relation(stmt->relation))
						refuse("ALTER ... SET SCHEMA", stmt->relation);
					break;
				}
			case T_RuleStmt:
				{
					/* a DO INSTEAD rule would divert custos' own inserts */
					RuleStmt   *stmt = (RuleStmt *) parsetree;

					if (is_custos_relation(stmt->relation))
						refuse("CREATE RULE", stmt->relation);
					break;
				}
			case T_CreatePolicyStmt:
				{
					/* a permissive policy would open the log and its keys */
					CreatePolicyStmt *stmt = (CreatePolicyStmt *) parsetree;

					if (is_custos_relation(stmt->table))
						refuse("CREATE POLICY", stmt->table);
					break;
				}
			case T_AlterPolicyStmt:
				{
					AlterPolicyStmt *stmt = (AlterPolicyStmt *) parsetree;

					if (is_custos_relation(stmt->table))
						refuse("ALTER POLICY", stmt->table);
					break;
				}
			case T_AlterSeqStmt:
				{
					/* the sealer depends on the id sequence's CACHE 1 */
					AlterSeqStmt *stmt = (AlterSeqStmt *) parsetree;

					if (is_custos_relation(stmt->sequence))
						refuse("ALTER SEQUENCE", stmt->sequence);
					break;
				}
			default:
				break;
		}
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}
