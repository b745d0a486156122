/*
 * custos--0.4--0.5.sql: retention, anonymization, erasure and legal holds (issue 5)
 */

\echo Use "ALTER EXTENSION custos UPDATE TO '0.5'" to load this file. \quit
