/*-------------------------------------------------------------------------
 *
 * taxonomy.h
 *	  The category/resource type/action registry (taxonomy.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOS_TAXONOMY_H
#define CUSTOS_TAXONOMY_H

extern void TaxonomyCheck(const char *category, const char *action,
						  const char *resource_type);

#endif							/* CUSTOS_TAXONOMY_H */
