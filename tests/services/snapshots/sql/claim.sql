SELECT send_batches.language
FROM send_batches
WHERE send_batches.campaign_id = %(p_campaign)s::INTEGER AND send_batches.batch_no = %(p_batch)s::INTEGER AND send_batches.status = %(status_1)s::VARCHAR AND (EXISTS (SELECT *
FROM campaigns
WHERE campaigns.id = %(p_campaign)s::INTEGER AND campaigns.status = %(status_2)s::VARCHAR)) FOR UPDATE SKIP LOCKED;

SELECT set_config('jit', %(jit)s, true), set_config('max_parallel_workers_per_gather', %(max_parallel_workers_per_gather)s, true), set_config('random_page_cost', %(random_page_cost)s, true);

SELECT campaign_lists.list_id
FROM campaign_lists
WHERE campaign_lists.campaign_id = %(p_campaign)s::INTEGER;

SELECT NOT (EXISTS (SELECT *
FROM suppressions
WHERE suppressions.email = deliveries.email)) AND (EXISTS (SELECT %(param_1)s::INTEGER AS anon_1
FROM subscriptions
WHERE subscriptions.member_id = deliveries.member_id AND subscriptions.list_id + %(list_id_1)s::INTEGER = ANY (%(list_ids)s::INTEGER[]) AND subscriptions.status = %(status_1)s::VARCHAR
 LIMIT ALL OFFSET %(param_2)s::INTEGER)) AS ok, deliveries.id, deliveries.email, deliveries.language, members.first_name, members.last_name, members.local, members.language AS language_1, members.postal_code, members.attributes
FROM deliveries LEFT OUTER JOIN members ON members.id = deliveries.member_id
WHERE deliveries.campaign_id = %(p_campaign)s::INTEGER AND deliveries.batch_no = %(p_batch)s::INTEGER AND deliveries.status = %(status_2)s::VARCHAR ORDER BY deliveries.id + %(id_1)s::BIGINT
 LIMIT %(p_limit)s::INTEGER;

UPDATE send_batches SET status=%(status)s::VARCHAR, attempts=(send_batches.attempts + %(attempts_1)s::INTEGER), claimed_at=%(p_now)s::TIMESTAMP WITH TIME ZONE, claimed_upto=%(p_upto)s::BIGINT, lease=%(p_lease)s::VARCHAR, error=%(error)s::VARCHAR WHERE send_batches.campaign_id = %(p_campaign)s::INTEGER AND send_batches.batch_no = %(p_batch)s::INTEGER AND send_batches.status = %(status_1)s::VARCHAR;
